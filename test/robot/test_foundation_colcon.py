"""colcon builds detr_ros as a ROS 2 package: share files where ROS looks, node executables where `ros2 run`
looks (and nothing else there), the offline `detr-ros` command on the workspace's PATH."""

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCES = shutil.ignore_patterns(".venv", ".venv-jazzy", ".git", "build", "install", "log", "out", "__pycache__",
                                     "*.egg-info", ".pytest_cache")


def _declared_console_scripts(site_packages):
    # setup.py is the single source of the entry points; read them from the metadata colcon installed.
    from importlib.metadata import distributions

    (installed,) = [d for d in distributions(path=[str(site_packages)]) if d.metadata["Name"] == "detr_ros"]
    return sorted(ep.name for ep in installed.entry_points if ep.group == "console_scripts")


@pytest.fixture(scope="module")
def colcon_install(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("colcon_ws")
    shutil.copytree(REPO_ROOT, workspace / "src" / "detr_ros", ignore=NOT_SOURCES)
    listed = subprocess.run(["colcon", "list", "--names-only", "--base-paths", "src"], cwd=workspace,
                            capture_output=True, text=True, timeout=120, check=True)
    build = subprocess.run(["colcon", "build", "--base-paths", "src", "--event-handlers", "console_direct+"],
                           cwd=workspace, capture_output=True, text=True, timeout=600, check=False)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    return workspace / "install" / "detr_ros", listed.stdout.split()


def test_colcon_sees_only_detr_ros_not_the_bundled_vision_msgs(colcon_install):
    _, packages = colcon_install
    assert packages == ["detr_ros"]


def test_share_folder_holds_launch_config_models_and_manifest(colcon_install):
    prefix, _ = colcon_install
    share = prefix / "share" / "detr_ros"
    assert (share / "package.xml").is_file()
    assert (share / "launch" / "detector.launch.py").is_file()
    assert (share / "config" / "detector.yaml").is_file()
    assert (share / "config" / "fastdds_loopback.xml").is_file()
    assert (share / "launch" / "demo.launch.py").is_file()
    assert any((share / "models").glob("*.onnx"))
    assert not any((share / "models").glob("*.pt")), "the training checkpoint is no runtime file"
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "detr_ros").is_file()


def test_node_executables_are_installed_for_ros2_run_and_the_cli_on_path(colcon_install, tmp_path):
    prefix, _ = colcon_install
    site_packages = next(prefix.glob("lib/python3*/site-packages"))
    scripts = _declared_console_scripts(site_packages)
    ros_executables = {"detector", "managed_detector", "synthetic_camera", "detection_recorder"}
    assert set(scripts) == ros_executables | {"detr-ros"}
    # `ros2 pkg executables detr_ros` lists every executable file in lib/detr_ros: only the nodes.
    installed = {p.name for p in (prefix / "lib" / "detr_ros").iterdir() if p.is_file() and os.access(p, os.X_OK)}
    assert installed == ros_executables
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site_packages), env.get("PYTHONPATH")) if p)
    env["AMENT_PREFIX_PATH"] = os.pathsep.join((str(prefix), env["AMENT_PREFIX_PATH"]))
    for executable in [prefix / "lib" / "detr_ros" / name for name in sorted(ros_executables)] + [
            prefix / "bin" / "detr-ros"]:
        assert executable.is_file() and os.access(executable, os.X_OK), f"{executable} is not installed"
        result = subprocess.run([str(executable), "--help"], cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=120, check=False)
        assert result.returncode == 0, f"{executable.name} --help failed:\n{result.stderr[-2000:]}"
        assert "usage" in result.stdout.lower()
    # The installed scripts run the installed package, not the working tree.
    probe = subprocess.run([sys.executable, "-c", "import detr_ros; print(detr_ros.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60, check=True)
    assert probe.stdout.strip().startswith(str(site_packages))


def test_setup_cfg_sends_scripts_to_lib_package_folder():
    config = configparser.ConfigParser()
    config.read(REPO_ROOT / "setup.cfg")
    assert config["develop"]["script_dir"] == "$base/lib/detr_ros"
    assert config["install"]["install_scripts"] == "$base/lib/detr_ros"
