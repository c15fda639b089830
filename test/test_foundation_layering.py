"""The runtime and node layers never pull in torch; the runtime never pulls in rclpy."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import detr_ros

PACKAGE_DIR = Path(detr_ros.__file__).resolve().parent


def _modules_of(*subpackages):
    names = []
    for subpackage in subpackages:
        names.append(f"detr_ros.{subpackage}")
        folder = PACKAGE_DIR / subpackage
        names += [f"detr_ros.{subpackage}.{info.name}" for info in pkgutil.iter_modules([str(folder)])]
    return names


def _imported_after(modules):
    """Import ``modules`` in a fresh interpreter; return the top-level packages it loaded."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_runtime_modules_import_neither_torch_nor_rclpy():
    modules = _modules_of("runtime", "synthetic") + ["detr_ros.cli", "detr_ros.errors", "detr_ros.tools.bench",
                                                     "detr_ros.coco_metrics", "detr_ros.commands.synth",
                                                     "detr_ros.commands.bench", "detr_ros.commands.detect"]
    modules = [m for m in modules if m != "detr_ros.tools.bench" or (PACKAGE_DIR / "tools" / "bench.py").exists()]
    loaded = _imported_after(modules)
    assert "torch" not in loaded
    assert "rclpy" not in loaded


def test_node_modules_do_not_import_torch():
    loaded = _imported_after(_modules_of("runtime", "synthetic", "ros") + ["detr_ros.tools.demo",
                                                                           "detr_ros.commands.demo"])
    assert "rclpy" in loaded, "the node layer should have been imported"
    assert "torch" not in loaded
