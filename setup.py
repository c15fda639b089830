"""detr_ros: an ament_python package that also installs with pip.

colcon installs the node executables to lib/detr_ros (setup.cfg) where ``ros2 run`` looks for
them, and the offline ``detr-ros`` command to bin, on the workspace's PATH; pip puts all of them
on the virtual environment's PATH.
"""

import os
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.install_scripts import install_scripts

PACKAGE = "detr_ros"
# Console scripts that are not ROS executables: `ros2 run` and `ros2 pkg executables` do not list them.
OFFLINE_SCRIPTS = ("detr-ros",)


def _data(folder, pattern="*"):
    return (f"share/{PACKAGE}/{folder}", [f for f in glob(f"{folder}/{pattern}") if "." in f.rsplit("/", 1)[-1]])


class InstallScripts(install_scripts):
    """Writes the offline scripts to <prefix>/bin when the others go to <prefix>/lib/detr_ros (colcon)."""

    def write_script(self, script_name, contents, mode="t", *ignored):
        ros_folder = Path(self.install_dir)
        if script_name not in OFFLINE_SCRIPTS or ros_folder.parts[-2:] != ("lib", PACKAGE):
            return super().write_script(script_name, contents, mode, *ignored)
        self.install_dir = os.fspath(ros_folder.parents[1] / "bin")
        try:
            return super().write_script(script_name, contents, mode, *ignored)
        finally:
            self.install_dir = os.fspath(ros_folder)


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={PACKAGE: ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        _data("launch"),
        _data("config"),
        _data("config/models"),
        _data("config/labels"),
        # The shipped ONNX model and its labels; the training checkpoint stays in the source tree.
        _data("models", "*.onnx"),
        _data("models", "*.txt"),
        _data("models", "*.md"),
    ],
    # Layers 1 and 2 (runtime and node) need only these; rclpy and the message
    # packages come from ROS 2 (apt on a robot, PyPI wheels in the dev environment).
    install_requires=["numpy", "opencv-python-headless", "onnxruntime", "pyyaml", "scipy"],
    extras_require={
        "offline": ["torch", "torchvision", "scipy", "pycocotools", "motmetrics", "tqdm", "safetensors", "onnx", "matplotlib"],
    },
    cmdclass={"install_scripts": InstallScripts},
    zip_safe=True,
    maintainer="detr_ros developers",
    maintainer_email="detr-ros@example.com",
    description="RT-DETR object detection for ROS 2 camera streams, with offline training and export.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "detr-ros = detr_ros.cli:main",
            "detector = detr_ros.ros.detector_node:main",
            "managed_detector = detr_ros.ros.managed_detector_node:main",
            "synthetic_camera = detr_ros.ros.synthetic_camera:main",
            "detection_recorder = detr_ros.ros.recorder_node:main",
        ],
    },
)
