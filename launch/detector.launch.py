"""Launch the detr_ros detector node.

  ros2 launch detr_ros detector.launch.py image_topics:="['/camera/image_raw']"
  ros2 launch detr_ros detector.launch.py model:=/path/model.onnx namespace:=front compressed:=true
  ros2 launch detr_ros detector.launch.py params_file:=/path/my_detector.yaml

Every parameter is documented in config/detector.yaml, the default params_file. An argument left
empty keeps the value from the parameters file; a given one overrides it.
"""

import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

# launch argument -> detector parameter it overrides when given
OVERRIDES = {
    "model": "model_path",
    "image_topics": "image_topics",
    "compressed": "compressed",
    "publish_debug_image": "publish_debug_image",
}


def _detector(context):
    overrides = {}
    for argument, parameter in OVERRIDES.items():
        text = LaunchConfiguration(argument).perform(context)
        if text:
            # The model is a path; the others are YAML: "['/a/image', '/b/image']", "true".
            overrides[parameter] = text if parameter == "model_path" else yaml.safe_load(text)
    return [Node(
        package="detr_ros",
        executable="detector",
        name="detr_detector",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"), overrides],
    )]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument("model", default_value="",
                              description="ONNX model file (model_path); empty: as in params_file"),
        DeclareLaunchArgument("image_topics", default_value="",
                              description="input image topics as a YAML list, one per camera; empty: as in params_file"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([FindPackageShare("detr_ros"), "config", "detector.yaml"]),
                              description="parameters file (see config/detector.yaml)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("compressed", default_value="",
                              description="true: read CompressedImage on <topic>/compressed; empty: as in params_file"),
        DeclareLaunchArgument("publish_debug_image", default_value="",
                              description="true or false; empty: as in params_file"),
        OpaqueFunction(function=_detector),
    ])
