"""detr_ros: RT-DETR object detection for ROS 2 camera streams.

Layers, imported in one direction only:
  detr_ros.runtime, detr_ros.synthetic  numpy, OpenCV, onnxruntime (no torch, no rclpy)
  detr_ros.ros                          rclpy on top of the runtime (no torch)
  detr_ros.modeling, training, export   PyTorch, offline
"""

__version__ = "0.1.0"
