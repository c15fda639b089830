"""The on-robot detector: numpy, OpenCV and onnxruntime only (never torch, never rclpy)."""

from detr_ros.runtime.detections import Detections
from detr_ros.runtime.detector import Detector

__all__ = ["Detector", "Detections"]
