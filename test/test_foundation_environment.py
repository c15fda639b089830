"""The environment command is idempotent and fails loudly on an unsupported interpreter; entering one
environment leaves the one entered before."""

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SETUP = REPO_ROOT / "scripts" / "setup_env.sh"
ACTIVATE = REPO_ROOT / "scripts" / "activate.sh"


def _setup_env(*args, python=None):
    env = dict(os.environ)
    if python is not None:
        env["PYTHON"] = python
    return subprocess.run(["bash", str(SETUP), *args], capture_output=True, text=True, env=env,
                          timeout=120, check=False)


def test_environment_made_by_the_test_command_is_up_to_date():
    result = _setup_env("--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_unsupported_python_is_refused_before_anything_is_installed(tmp_path):
    # A real interpreter of an unsupported version (the machine has pyenv's), else a script
    # that is one in every respect the check looks at.
    old_python = Path("/root/.pyenv/versions/3.9.18/bin/python3")
    if not old_python.exists():
        old_python = tmp_path / "python3.9"
        old_python.write_text("#!/bin/sh\necho 3.9\n")
        old_python.chmod(0o755)
    result = _setup_env(python=str(old_python))
    assert result.returncode == 1
    assert "Python 3.9 is not supported" in result.stderr
    assert "3.10, 3.11 or 3.12" in result.stderr


def test_missing_interpreter_is_named():
    result = _setup_env(python="/nonexistent/python3.11")
    assert result.returncode == 1
    assert "no Python interpreter '/nonexistent/python3.11'" in result.stderr


def _wheels_environment(folder, distro):
    """A virtual environment marked as made of one ROS 2 distro's wheels, as setup_env.sh marks them."""
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(folder)], check=True, timeout=120)
    (folder / ".detr_ros_wheels_distro").write_text(distro)
    return folder


def test_entering_a_second_environment_leaves_the_first_ones_paths(tmp_path):
    first = _wheels_environment(tmp_path / "kilted_env", "kilted")
    second = _wheels_environment(tmp_path / "jazzy_env", "jazzy")
    script = (f'DETR_ROS_VENV={first} . {ACTIVATE} && DETR_ROS_VENV={second} . {ACTIVATE} && '
              'printf "%s\\n" "$LD_LIBRARY_PATH" "$AMENT_PREFIX_PATH" "$CMAKE_PREFIX_PATH" "$ROS_DISTRO" "$VIRTUAL_ENV"')
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "ROS_DISTRO",
                                                                         "DETR_ROS_WHEELS_DISTRO")}
    env.update(LD_LIBRARY_PATH="/opt/vendor/lib", AMENT_PREFIX_PATH="", CMAKE_PREFIX_PATH="")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    library_path, ament_prefix, cmake_prefix, distro, virtual_env = result.stdout.splitlines()
    assert library_path == f"{second}/lib:/opt/vendor/lib"
    assert ament_prefix == cmake_prefix == str(second)
    assert (distro, virtual_env) == ("jazzy", str(second))
