"""Launch the detr_ros detector node (/detr_detector).

  ros2 launch detr_ros detector.launch.py image_topics:=/camera/image_raw
  ros2 launch detr_ros detector.launch.py image_topics:="[/front/image_raw, /rear/image_raw]" score_threshold:=0.5
  ros2 launch detr_ros detector.launch.py model:=/path/model.onnx namespace:=front compressed:=true
  ros2 launch detr_ros detector.launch.py params_file:=/path/my_detector.yaml
  ros2 launch detr_ros detector.launch.py --show-args      (every argument, with its description)

Every parameter is documented in config/detector.yaml, the default params_file. An argument left
empty keeps the value from the parameters file; a given one overrides it. The arguments are checked
(detr_ros/ros/launch_arguments.py) before the node starts.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from detr_ros.ros.launch_arguments import DETECTOR_ARGUMENTS, detector_launch


def _detector(context):
    given = {argument.name: LaunchConfiguration(argument.name).perform(context) for argument in DETECTOR_ARGUMENTS}
    return [Node(**detector_launch(given).node_arguments())]


def generate_launch_description():
    return LaunchDescription([
        *(DeclareLaunchArgument(argument.name, default_value=argument.default, description=argument.description)
          for argument in DETECTOR_ARGUMENTS),
        OpaqueFunction(function=_detector),
    ])
