"""detr_ros: an ament_python package that also installs with pip.

colcon installs the console scripts to lib/detr_ros (setup.cfg) where ``ros2 run``
looks for them; pip puts them on the virtual environment's PATH.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "detr_ros"


def _data(folder, pattern="*"):
    return (f"share/{PACKAGE}/{folder}", [f for f in glob(f"{folder}/{pattern}") if "." in f.rsplit("/", 1)[-1]])


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
        _data("models"),
    ],
    # Layers 1 and 2 (runtime and node) need only these; rclpy and the message
    # packages come from ROS 2 (apt on a robot, PyPI wheels in the dev environment).
    install_requires=["numpy", "opencv-python-headless", "onnxruntime", "pyyaml", "scipy"],
    extras_require={
        "offline": ["torch", "torchvision", "scipy", "pycocotools", "motmetrics", "tqdm", "safetensors", "onnx", "matplotlib"],
    },
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
            "synthetic_camera = detr_ros.ros.synthetic_camera:main",
            "detection_recorder = detr_ros.ros.recorder_node:main",
        ],
    },
)
