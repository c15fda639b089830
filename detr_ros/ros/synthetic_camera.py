"""The ``synthetic_camera`` node: a synthetic scene video with its ground truth, for demos and tests.

Publishes frame after frame of ``detr_ros.synthetic.SceneVideo`` at ``rate`` Hz on ``image``
(sensor_msgs/Image in ``encoding``) or, for encoding jpeg/png, on ``image/compressed``
(sensor_msgs/CompressedImage, the image_transport convention). Each frame's ground truth
goes to ``ground_truth`` as a vision_msgs/Detection2DArray with the same header: boxes in
pixels, class_id = training-class index, score 1, id = the object's track id.
"""

import sys

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray

from detr_ros.ros import messages
from detr_ros.ros.executable import run_node
from detr_ros.ros.image_conversion import COMPRESSED_FORMATS, MAX_IMAGE_SIDE, SUPPORTED_ENCODINGS
from detr_ros.ros.parameters import ParameterSpec, declare_parameters
from detr_ros.synthetic.video import SceneVideo

NODE_NAME = "synthetic_camera"
# Linger after the last frame so that reliable subscribers receive it before the process exits.
LINGER_S = 1.0
PARAMETERS = (
    ParameterSpec("width", 640, "image width in pixels", low=16, high=MAX_IMAGE_SIDE),
    ParameterSpec("height", 480, "image height in pixels", low=16, high=MAX_IMAGE_SIDE),
    ParameterSpec("rate", 10.0, "frames per second", low=0.1, high=1000.0),
    ParameterSpec("seed", 0, "scene seed", low=0, high=2**31 - 1),
    ParameterSpec("frames", 0, "frames to publish before exiting; 0: run until stopped", low=0, high=2**31 - 1),
    ParameterSpec("encoding", "rgb8", "sensor_msgs/Image encoding, or jpeg/png for sensor_msgs/CompressedImage",
                  choices=SUPPORTED_ENCODINGS + COMPRESSED_FORMATS),
    ParameterSpec("frame_id", "camera", "header frame_id"),
    ParameterSpec("wait_for_subscribers", 0, "start once the image topic has this many subscribers and the "
                  "ground_truth topic at least one; 0: start at once", low=0, high=100),
)


def ground_truth_message(header, annotations):
    """Detection2DArray of a frame's ObjectAnnotations: xyxy pixel-edge boxes, class index, score 1, track id."""
    if annotations:
        boxes = np.array([a.box for a in annotations], np.float64)
        class_ids = np.array([a.class_index for a in annotations], np.int64)
    else:
        boxes, class_ids = np.zeros((0, 4)), np.zeros(0, np.int64)
    return messages.DetectionArrayWriter().fill(header, boxes, np.ones(len(annotations)), class_ids, [], "index",
                                                [str(a.track_id) for a in annotations])


class SyntheticCamera(Node):
    """Publishes ``frames`` frames (or until stopped); ``finished`` turns true LINGER_S after the last."""

    def __init__(self, **node_options):
        super().__init__(NODE_NAME, **node_options)
        values = declare_parameters(self, PARAMETERS)
        self.encoding = values["encoding"]
        width, height = values["width"], values["height"]
        self.video = SceneVideo(width, height, values["seed"])
        self.frames = values["frames"]
        self.frame_id = values["frame_id"]
        self.wait_for_subscribers = values["wait_for_subscribers"]
        self.index = 0
        self.finished = False
        self._linger = None
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        if self.encoding in COMPRESSED_FORMATS:
            self.image_publisher = self.create_publisher(CompressedImage, "image/compressed", qos)
        else:
            self.image_publisher = self.create_publisher(Image, "image", qos)
        self.truth_publisher = self.create_publisher(Detection2DArray, "ground_truth", QoSProfile(depth=10))
        self.timer = self.create_timer(1.0 / values["rate"], self.publish_frame)
        self.get_logger().info(f"publishing {width}x{height} {self.encoding} on {self.image_publisher.topic_name} "
                               f"at {values['rate']} Hz, ground truth on "
                               f"{self.truth_publisher.topic_name}")

    def publish_frame(self):
        if self.index == 0 and self.wait_for_subscribers and (
                self.image_publisher.get_subscription_count() < self.wait_for_subscribers
                or self.truth_publisher.get_subscription_count() < 1):
            return
        bgr, annotations = self.video.frame(self.index)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        if self.encoding in COMPRESSED_FORMATS:
            image = messages.compressed_image_message(header, rgb, self.encoding)
        else:
            image = messages.image_message(header, rgb, self.encoding)
        try:
            # Ground truth first: a subscriber that pairs by stamp has it when the detections come back.
            self.truth_publisher.publish(ground_truth_message(header, annotations))
            self.image_publisher.publish(image)
        except Exception:  # a stop signal shuts the context down under a running callback
            if self.context.ok():
                raise
            return
        self.index += 1
        if self.frames and self.index >= self.frames:
            self.timer.cancel()
            self._linger = self.create_timer(LINGER_S, self._end)

    def _end(self):
        self._linger.cancel()
        self.finished = True


def main(args=None):
    return run_node(SyntheticCamera, NODE_NAME, "Publishes a synthetic scene video with its ground truth, for demos "
                    "and tests.", PARAMETERS, args)


if __name__ == "__main__":
    sys.exit(main())
