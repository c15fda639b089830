"""What the detector node adds to 2D boxes, per camera: track ids (``tracking``) and 3D from depth (``depth_topics``).

The node keeps to a few hook lines: it asks ``detection_threshold`` what to run the model at,
``track`` which detections to publish with which ids, and hands each published frame to
``publish_3d``. With depth, camera ``<ns>/<name>`` also subscribes to its depth image (16UC1
millimetres or 32FC1 metres, aligned to the colour image) and ``camera_info`` beside it, and
publishes ``<ns>/detections_3d`` (vision_msgs/Detection3DArray) and ``<ns>/markers``
(visualization_msgs/MarkerArray for rviz) for each frame whose depth, stamped within
``depth_tolerance_s`` of it, comes by ``depth_wait_s`` after its 2D detections were published;
a frame without depth gets its 2D detections only. Nothing waits for depth: a frame is placed in
3D by the image callback that ran the model when its depth came first, else by the depth callback
when its depth comes, so a late or stopped depth stream never holds up the 2D detections.
"""

import threading
import time
from dataclasses import dataclass, field

from rclpy.exceptions import NameValidationException
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from detr_ros.errors import ConfigError
from detr_ros.ros import messages, spatial_messages
from detr_ros.ros.depth_messages import decode_depth_message, intrinsics_from_camera_info
from detr_ros.ros.image_conversion import ImageMessageError
from detr_ros.ros.stamp_sync import StampPairing
from detr_ros.runtime.depth import TrackPlacer
from detr_ros.runtime.tracking import Tracker, TrackerSettings

OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
WARNING_THROTTLE_S = 5.0


def tracker_settings(values):
    """TrackerSettings from the node's ``tracking_*`` parameter values (name -> value)."""
    return TrackerSettings(low_score=values["tracking_low_score"], lost_timeout_s=values["tracking_lost_timeout_s"],
                           reset_gap_s=values["tracking_reset_gap_s"])


def depth_topics_for(depth_topics, num_cameras):
    """One depth topic (or None) per camera from the ``depth_topics`` parameter: empty (or blank entries only),
    or one entry a camera ("" for a camera without depth)."""
    if not any(topic.strip() for topic in depth_topics or ()):
        return [None] * num_cameras
    if len(depth_topics) != num_cameras:
        raise ConfigError(f"depth_topics: {len(depth_topics)} entries for {num_cameras} image_topics; expected one "
                          "per camera, in the same order ('' for a camera without depth)")
    return [topic.rstrip("/") or None for topic in depth_topics]


def camera_info_topic(depth_topic):
    """``<ns>/camera_info`` beside a depth topic ``<ns>/<name>`` (the image_transport convention)."""
    return f"{depth_topic[: depth_topic.rfind('/') + 1]}camera_info"


@dataclass
class _Published2D:
    """A frame's published 2D output, as publish_3d takes it, kept until its depth frame comes."""

    header: object
    detections: object
    ids: list
    labels: list
    image_size: tuple
    camera_frame_id: str  # the colour image's own, before any frame_id parameter replaced it


@dataclass
class _DepthCamera:
    depth_topic: str
    camera_info_topic: str
    pairing: StampPairing
    detections_3d: object  # publishers
    markers: object
    marker_namespace: str  # the camera's image topic
    placer: TrackPlacer
    intrinsics: object = None  # CameraIntrinsics of the latest camera_info
    # Held while pairing and placing: the image callbacks and the depth callback do, in different threads.
    lock: threading.Lock = field(default_factory=threading.Lock)


class Perception:
    """Per-camera trackers and depth streams of the detector ``node``, as its parameter ``values`` ask;
    class_names: the model's, for the rviz markers' text."""

    def __init__(self, node, values, cameras_topics, input_qos, class_names):
        self._node = node
        self._class_names = class_names
        self._endpoints = []  # subscriptions and publishers, withdrawn by close()
        settings = tracker_settings(values) if values["tracking"] else None
        self._trackers = [Tracker(settings) for _ in cameras_topics] if settings else None
        self._tolerance_ns = round(values["depth_tolerance_s"] * 1e9)
        self._wait_ns = round(values["depth_wait_s"] * 1e9)
        depth_topics = depth_topics_for(values["depth_topics"], len(cameras_topics))
        try:
            self._depth = [self._subscribe_depth(topic, camera, input_qos) if topic else None
                           for topic, camera in zip(depth_topics, cameras_topics)]
        except NameValidationException as error:
            raise ConfigError(f"depth_topics: {error}") from None

    def _subscribe_depth(self, depth_topic, camera_topics, input_qos):
        prefix = camera_topics.detections[: -len("detections")]
        camera = _DepthCamera(depth_topic=depth_topic, camera_info_topic=camera_info_topic(depth_topic),
                              pairing=StampPairing(self._tolerance_ns, self._wait_ns),
                              detections_3d=self._node.create_publisher(Detection3DArray, f"{prefix}detections_3d",
                                                                        OUTPUT_QOS),
                              markers=self._node.create_publisher(MarkerArray, f"{prefix}markers", OUTPUT_QOS),
                              marker_namespace=camera_topics.image,
                              placer=TrackPlacer())
        self._endpoints += [camera.detections_3d, camera.markers]

        def on_depth(msg):
            try:
                depth, encoding = decode_depth_message(msg)
            except ImageMessageError as error:
                self._node.get_logger().warning(f"rejected a message on {camera.depth_topic}: {error}",
                                                throttle_duration_sec=WARNING_THROTTLE_S)
                return
            depth_frame = (depth, encoding, msg.header.frame_id)
            with camera.lock:
                for waiting in camera.pairing.add_depth(messages.stamp_ns(msg.header), depth_frame,
                                                        time.monotonic_ns()):
                    self._place(camera, waiting, depth_frame)
                self._report_unpaired(camera)

        def on_camera_info(msg):
            try:
                camera.intrinsics = intrinsics_from_camera_info(msg)
            except ConfigError as error:
                self._node.get_logger().warning(f"ignored {camera.camera_info_topic}: {error}",
                                                throttle_duration_sec=WARNING_THROTTLE_S)

        depth_images = self._node.create_subscription(Image, depth_topic, on_depth, input_qos)
        camera_info = self._node.create_subscription(CameraInfo, camera.camera_info_topic, on_camera_info, input_qos)
        # Resolved, as the operator's tools name them.
        camera.depth_topic, camera.camera_info_topic = depth_images.topic_name, camera_info.topic_name
        self._endpoints += [depth_images, camera_info]
        return camera

    def close(self):
        """Withdraw the depth subscriptions and 3D outputs (a managed node's deactivate)."""
        for endpoint in self._endpoints:
            if hasattr(endpoint, "publish"):
                self._node.destroy_publisher(endpoint)
            else:
                self._node.destroy_subscription(endpoint)
        self._endpoints = []

    def detection_threshold(self, score_threshold):
        """The score the model must run down to: the tracker's weak detections continue tracks."""
        if self._trackers is None:
            return score_threshold
        return self._trackers[0].settings.detection_threshold(score_threshold)

    def track(self, camera, detections, stamp_ns, score_threshold):
        """(Detections to publish, their ids [k] as strings, or None without tracking: ids stay empty)."""
        if self._trackers is None:
            return detections, None
        published, track_ids = self._trackers[camera].track(detections, stamp_ns, score_threshold)
        return published, [str(i) if i else "" for i in track_ids.tolist()]

    def publish_3d(self, camera, header, stamp_ns, detections, ids, labels, image_size, camera_frame_id):
        """Publish the frame's detections in 3D if the camera has depth: now if its depth frame is here,
        else when it comes (by ``depth_wait_s``).

        detections: the published Detections; ids: their ids (None: empty, as in 2D); labels: their
        ObjectHypothesis.class_id strings, as in 2D; image_size: the colour image's (width, height);
        camera_frame_id: the colour image's own frame_id, which an aligned depth image shares.
        """
        depth_camera = self._depth[camera]
        if depth_camera is None:
            return
        published = _Published2D(header, detections, ids if ids is not None else [""] * len(detections), labels,
                                 image_size, camera_frame_id)
        with depth_camera.lock:
            depth_frame = depth_camera.pairing.add_detections(stamp_ns, published, time.monotonic_ns())
            if depth_frame is not None:
                self._place(depth_camera, published, depth_frame)
            self._report_unpaired(depth_camera)

    def _report_unpaired(self, depth_camera):
        """Tell the operator why frames got no 3D, if some were let go without depth (throttled)."""
        gaps = depth_camera.pairing.take_unpaired()
        if not gaps:
            return
        gap_ns = gaps[-1]
        if gap_ns is None:
            reason = f"no depth frame has come on {depth_camera.depth_topic}"
        elif gap_ns <= self._tolerance_ns:
            reason = f"its depth frame on {depth_camera.depth_topic} came later than depth_wait_s"
        else:
            reason = (f"the nearest depth frame on {depth_camera.depth_topic} is stamped {gap_ns / 1e9:.3f} s "
                      f"from it, beyond depth_tolerance_s ({self._tolerance_ns / 1e9:g} s); either the depth "
                      "stream is slower than the colour one, or the two are not stamped by the same clock")
        self._node.get_logger().warning(f"a frame got 2D detections only: {reason}",
                                        throttle_duration_sec=WARNING_THROTTLE_S)

    def _place(self, depth_camera, published, depth_frame):
        """Place a frame's published detections with its depth frame (depth, encoding, frame_id) and publish
        them; called with ``depth_camera.lock`` held, so frames are placed in stamp order."""
        intrinsics = depth_camera.intrinsics  # once: the camera_info callback may replace it meanwhile
        if intrinsics is None:
            self._node.get_logger().warning(
                f"no 3D detections: no camera_info has come on {depth_camera.camera_info_topic} yet",
                throttle_duration_sec=WARNING_THROTTLE_S)
            return
        depth, encoding, depth_frame_id = depth_frame
        if depth_frame_id and published.camera_frame_id and depth_frame_id != published.camera_frame_id:
            # Placed all the same: some drivers name the frames of aligned images differently.
            self._node.get_logger().warning(
                f"the depth images on {depth_camera.depth_topic} are in frame '{depth_frame_id}', the colour images "
                f"in '{published.camera_frame_id}': 3D needs depth aligned to the colour camera (e.g. a RealSense's "
                "aligned_depth_to_color topic), or the 3D detections are off",
                throttle_duration_sec=WARNING_THROTTLE_S)
        if depth.shape != (intrinsics.height, intrinsics.width):
            self._node.get_logger().warning(
                f"no 3D detections: the depth image on {depth_camera.depth_topic} is {depth.shape[1]}x{depth.shape[0]} "
                f"pixels, but the camera_info on {depth_camera.camera_info_topic} describes {intrinsics.width}x"
                f"{intrinsics.height} (region of interest and binning applied); they must describe the same images",
                throttle_duration_sec=WARNING_THROTTLE_S)
            return
        placed = depth_camera.placer.locate(depth, published.detections.boxes, published.ids,
                                            intrinsics, published.image_size, encoding)
        depth_camera.detections_3d.publish(spatial_messages.serialized_detection_3d_array(
            published.header, placed, published.detections.scores, published.labels, published.ids))
        if depth_camera.markers.get_subscription_count() > 0:
            depth_camera.markers.publish(spatial_messages.serialized_marker_array(
                published.header, depth_camera.marker_namespace, placed, published.detections.class_ids, published.ids,
                self._class_names))
