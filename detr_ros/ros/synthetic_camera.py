"""The ``synthetic_camera`` node: a synthetic scene video with its ground truth, for demos and tests.

Publishes frame after frame of ``detr_ros.synthetic.SceneVideo`` at ``rate`` Hz on ``image``
(sensor_msgs/Image in ``encoding``) or, for encoding jpeg/png, on ``image/compressed``
(sensor_msgs/CompressedImage, the image_transport convention). Each frame's ground truth
goes to ``ground_truth`` as a vision_msgs/Detection2DArray with the same header: boxes in
pixels, class_id = training-class index, score 1, id = the object's track id.

With ``depth`` (16UC1 or 32FC1) it also publishes the aligned depth image on ``depth/image_raw``,
the camera's intrinsics on ``depth/camera_info`` (the same for the colour image, which the depth
is aligned to), and the objects' 3D positions on ``ground_truth_3d`` (vision_msgs/Detection3DArray,
centre = the point at the object's distance behind its box centre, optical frame). With
``traffic`` objects cross the picture and leave, and new ones come in.
"""

import sys

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray

from detr_ros.ros import detection_cdr, messages, spatial_messages
from detr_ros.ros.depth_messages import camera_info_message, depth_image_message
from detr_ros.ros.executable import run_node
from detr_ros.ros.image_conversion import COMPRESSED_FORMATS, MAX_IMAGE_SIDE, SUPPORTED_ENCODINGS
from detr_ros.ros.parameters import ParameterSpec, declare_parameters
from detr_ros.runtime.depth import DEPTH_ENCODINGS, BoxesIn3D
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
    ParameterSpec("depth", "", "also publish aligned depth in this encoding (16UC1 or 32FC1) with camera_info and "
                  "3D ground truth; empty: no depth", choices=("",) + DEPTH_ENCODINGS),
    ParameterSpec("traffic", False, "objects cross the picture and leave, and new ones come in"),
    ParameterSpec("wait_for_subscribers", 0, "start once the image topic has this many subscribers and the "
                  "ground_truth topic at least one; 0: start at once", low=0, high=100),
)


def _labels_and_ids(annotations):
    """ObjectAnnotations' class indices as ObjectHypothesis.class_id strings, and their track ids as ids."""
    return (messages.class_labels([a.class_index for a in annotations], [], "index"),
            [str(a.track_id) for a in annotations])


def ground_truth_message(header, annotations):
    """The serialised Detection2DArray of a frame's ObjectAnnotations: xyxy pixel-edge boxes, class index,
    score 1, track id."""
    boxes = np.array([a.box for a in annotations], np.float64).reshape(-1, 4)
    return detection_cdr.detection_2d_array(header, boxes, np.ones(len(annotations)), *_labels_and_ids(annotations))


def ground_truth_3d_message(header, annotations):
    """The serialised Detection3DArray of a frame's ObjectAnnotations' positions (metres, optical frame),
    id = track id."""
    centres = np.array([a.position for a in annotations], np.float64).reshape(-1, 3)
    placed = BoxesIn3D(centres=centres, sizes=np.zeros_like(centres), valid=np.ones(len(annotations), bool))
    return spatial_messages.serialized_detection_3d_array(header, placed, np.ones(len(annotations)),
                                                          *_labels_and_ids(annotations))


class SyntheticCamera(Node):
    """Publishes ``frames`` frames (or until stopped); ``finished`` turns true LINGER_S after the last."""

    def __init__(self, **node_options):
        super().__init__(NODE_NAME, **node_options)
        values = declare_parameters(self, PARAMETERS)
        self.encoding = values["encoding"]
        width, height = values["width"], values["height"]
        self.video = SceneVideo(width, height, values["seed"], traffic=values["traffic"])
        self.depth = values["depth"]
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
        if self.depth:
            self.depth_publisher = self.create_publisher(Image, "depth/image_raw", qos)
            self.info_publisher = self.create_publisher(CameraInfo, "depth/camera_info", qos)
            self.truth_3d_publisher = self.create_publisher(Detection3DArray, "ground_truth_3d", QoSProfile(depth=10))
        self.timer = self.create_timer(1.0 / values["rate"], self.publish_frame)
        self.get_logger().info(f"publishing {width}x{height} {self.encoding} on {self.image_publisher.topic_name} "
                               f"at {values['rate']} Hz, ground truth on "
                               f"{self.truth_publisher.topic_name}")

    def publish_frame(self):
        if self.index == 0 and self.wait_for_subscribers and (
                self.image_publisher.get_subscription_count() < self.wait_for_subscribers
                or self.truth_publisher.get_subscription_count() < 1):
            return
        frame = self.video.render(self.index)
        bgr, annotations = frame.bgr, frame.annotations
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        if self.encoding in COMPRESSED_FORMATS:
            image = messages.compressed_image_message(header, rgb, self.encoding)
        else:
            image = messages.image_message(header, rgb, self.encoding)
        try:
            # Ground truth first: a subscriber that pairs by stamp has it when the detections come back.
            self.truth_publisher.publish(ground_truth_message(header, annotations))
            if self.depth:
                # Depth before colour too: the detector pairs them when the colour frame's turn comes.
                self.truth_3d_publisher.publish(ground_truth_3d_message(header, annotations))
                self.info_publisher.publish(camera_info_message(header, self.video.intrinsics))
                self.depth_publisher.publish(depth_image_message(header, frame.depth_m, self.depth))
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
