"""Launch the demo pipeline: synthetic camera -> detr_ros detector -> detection recorder.

  ros2 launch detr_ros demo.launch.py
  ros2 launch detr_ros demo.launch.py model:=/path/model.onnx frames:=0 output_dir:=/tmp/demo

The camera publishes scenes of the shipped model's six shapes with their ground truth; the recorder
writes an annotated video, a contact sheet and recording.json (latency, AP50) to output_dir.
`make demo` runs the same three nodes without ros2 launch.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from detr_ros.ros.launch_arguments import DEMO_ARGUMENTS, demo_launch


def _pipeline(context):
    given = {argument.name: LaunchConfiguration(argument.name).perform(context) for argument in DEMO_ARGUMENTS}
    return [Node(**node.node_arguments()) for node in demo_launch(given)]


def generate_launch_description():
    return LaunchDescription([
        *(DeclareLaunchArgument(argument.name, default_value=argument.default, description=argument.description)
          for argument in DEMO_ARGUMENTS),
        OpaqueFunction(function=_pipeline),
    ])
