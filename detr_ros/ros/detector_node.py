"""The ``detector`` node (``/detr_detector``): camera images in, vision_msgs/Detection2DArray out.

Subscription callbacks decode a message and leave the frame in its camera's slot. The callback
that finds the model idle runs it: on every waiting frame (one per camera) as one batch, then
publishes, and again while frames wait. The node's executable spins two threads that take turns
(LeaderFollowerExecutor), so a frame's inference starts in the thread that received it, while the
other thread goes on receiving: a slow model drops old frames instead of building up latency.

Per camera ``<ns>/<name>``: ``<ns>/detections`` (every processed frame, empty or not),
``<ns>/label_info`` (transient local), ``<ns>/debug_image`` (only with publish_debug_image, drawn
only while subscribed); plus ``/diagnostics`` about once a second.

``DetectorWork`` holds the node's work in four steps (declare the parameters, load the model,
start serving, stop serving) so that the plain node here and the managed (lifecycle) node in
``managed_detector_node`` run the same code, the plain one all at once at start.
"""

import dataclasses
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.exceptions import NameValidationException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from detr_ros.errors import ConfigError
from detr_ros.ros import detection_cdr, messages
from detr_ros.ros.detector_parameters import (
    NODE_NAME,
    PARAMETERS,
    SPECS,
    cameras_from,
    class_ids_from,
    default_model_path,
    tensorrt_options,
)
from detr_ros.ros.executable import run_node
from detr_ros.ros.image_conversion import ImageMessageError, decode_compressed_message, decode_image_message
from detr_ros.ros.latest_frames import Frame, LatestFrames
from detr_ros.ros.node_statistics import StreamStatistics
from detr_ros.ros.parameters import declare_parameters, warn_about_unknown_parameters
from detr_ros.ros.perception import Perception
from detr_ros.runtime import Detector
from detr_ros.runtime.cpu_int8 import choose_cpu_model
from detr_ros.runtime.drawing import draw_detections

DIAGNOSTICS_PERIOD_S = 1.0
# One thread runs the model while the other receives the next frames and serves the other callbacks.
SPINNING_THREADS = 2
WARNING_THROTTLE_S = 5.0
RUNTIME_SETTINGS = ("score_threshold", "classes", "max_detections", "duplicate_iou", "publish_debug_image",
                    "class_id_format", "frame_id")
# Outputs are reliable so that reliable and best-effort subscribers (rviz defaults to reliable) both match.
OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LABEL_INFO_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
DEBUG_IMAGE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)


@dataclasses.dataclass(frozen=True)
class Settings:
    """The parameters that may change while running; replaced whole, so a batch reads a consistent set."""

    score_threshold: float
    class_ids: object  # list of allowed class indices, or None for all
    max_detections: int
    duplicate_iou: float
    publish_debug_image: bool
    class_id_format: str
    frame_id: str


@dataclasses.dataclass
class Camera:
    topics: object  # detector_parameters.CameraTopics
    statistics: StreamStatistics
    detections: object  # publishers
    label_info: object
    debug_image: object = None  # only while publish_debug_image is true
    subscription: object = None


class DetectorWork:
    """The detector's work, mixed into a rclpy Node (or LifecycleNode) subclass.

    declare_parameters() once, then load_model() -> start() -> stop() -> unload_model(), any
    number of times; between start() and stop() the node serves its cameras.
    """

    def declare_detector_parameters(self):
        """Declare and check the parameters; raises ConfigError on a bad start value."""
        self._values = declare_parameters(self, PARAMETERS)
        self._cameras_topics = cameras_from(self._values["image_topics"], self._values["compressed"])
        warn_about_unknown_parameters(self)
        self._detector = None
        self._settings = None
        self._cameras = []
        self._frames = None  # LatestFrames while serving
        self._decoding = threading.Lock()
        # Image callbacks may run side by side: one runs the model while another leaves a newer frame.
        self._image_callbacks = ReentrantCallbackGroup()
        self.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def serving(self):
        return self._frames is not None

    def load_model(self):
        """Create the inference session; raises DetrRosError when the model or a setting is unusable."""
        detection_cdr.check_encoding()
        values = self._values
        model = choose_cpu_model(values["model_path"] or default_model_path(), values["providers"],
                                 values["cpu_int8"])
        if model.note:
            self.get_logger().info(f"model: {model.note}")
        self._detector = Detector(
            model.path,
            providers=values["providers"],
            threads=values["threads"] or None,
            tensorrt_options=tensorrt_options(values),
            labels_path=values["labels_path"] or None,
            device_id=values["device_id"],
            thread_spinning=values["thread_spinning"],
            model_format=values["model_format"] or None,
            resize_mode=values["resize_mode"] or None,
            normalization=values["normalization"] or None,
        )
        self._settings = self._settings_from(values)

    def unload_model(self):
        """Free the inference session (and the memory it holds)."""
        self._detector = None
        self._settings = None

    def start(self):
        """Advertise the outputs and subscribe to the cameras."""
        frames = LatestFrames(len(self._cameras_topics))
        input_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=self._values["qos_depth"],
            reliability=ReliabilityPolicy.RELIABLE if self._values["qos_reliability"] == "reliable"
            else ReliabilityPolicy.BEST_EFFORT,
        )
        try:
            self._cameras = [self._create_camera(index, topics, input_qos, frames)
                             for index, topics in enumerate(self._cameras_topics)]
        except NameValidationException as error:
            raise ConfigError(f"image_topics: {error}") from None
        self._perception = Perception(self, self._values, self._cameras_topics, input_qos,
                                      self._detector.class_names)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self._diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self._publish_label_info()
        self._frames = frames
        inputs = ", ".join(f"{c.subscription.topic_name} ({'compressed' if c.topics.compressed else 'raw'})"
                           for c in self._cameras)
        self.get_logger().info(
            f"model {self._detector.model_path} ({len(self._detector.class_names)} classes) on "
            f"{self._detector.provider}; listening to {inputs}"
        )

    def stop(self):
        """Let the batch in progress finish, then withdraw the subscriptions and outputs."""
        if self._frames is None:
            return
        self._frames.close(timeout=10.0)
        self._frames = None
        self.destroy_timer(self._diagnostics_timer)
        self.destroy_publisher(self._diagnostics)
        self._perception.close()
        for camera in self._cameras:
            self.destroy_subscription(camera.subscription)
            for publisher in (camera.detections, camera.label_info, camera.debug_image):
                if publisher is not None:
                    self.destroy_publisher(publisher)
        self._cameras = []

    def _create_camera(self, index, topics, input_qos, frames):
        camera = Camera(
            topics=topics,
            statistics=StreamStatistics(time.monotonic_ns()),
            detections=self.create_publisher(Detection2DArray, topics.detections, OUTPUT_QOS),
            label_info=self.create_publisher(LabelInfo, topics.label_info, LABEL_INFO_QOS),
        )
        self._advertise_debug_image(camera, self._settings.publish_debug_image)
        message_type = CompressedImage if topics.compressed else Image
        camera.subscription = self.create_subscription(
            message_type, topics.image, self._make_callback(index, camera, frames), input_qos,
            callback_group=self._image_callbacks)
        return camera

    def _advertise_debug_image(self, camera, wanted):
        """Create or withdraw the camera's debug_image publisher, so it is advertised only when enabled."""
        if wanted and camera.debug_image is None:
            camera.debug_image = self.create_publisher(Image, camera.topics.debug_image, DEBUG_IMAGE_QOS)
        elif not wanted and camera.debug_image is not None:
            publisher, camera.debug_image = camera.debug_image, None
            self.destroy_publisher(publisher)

    # -- parameters -------------------------------------------------------------------------------

    def _settings_from(self, values, current=None):
        """Settings from parameter values: all of them at start, the changed ones over ``current`` later."""
        fields = {name: values[name] for name in RUNTIME_SETTINGS if name in values and name != "classes"}
        if "classes" in values:
            fields["class_ids"] = class_ids_from(values["classes"], self._detector.class_names)
        return Settings(**fields) if current is None else dataclasses.replace(current, **fields)

    def _on_set_parameters(self, parameters):
        """Apply runtime changes, or refuse the whole set with the reason."""
        values = {}
        for parameter in parameters:
            spec = SPECS.get(parameter.name)
            if spec is None:
                continue  # e.g. use_sim_time, handled by rclpy
            problem = spec.problem(parameter.value)
            if problem:
                return SetParametersResult(successful=False, reason=f"{parameter.name}: {problem}")
            values[parameter.name] = spec.normalized(parameter.value)
        if self._detector is None:  # not configured yet: checked, and used once the model is loaded
            self._values.update(values)
            return SetParametersResult(successful=True)
        try:
            settings = self._settings_from(values, self._settings)
        except ConfigError as error:
            return SetParametersResult(successful=False, reason=str(error))
        self._values.update(values)
        self._apply_settings(settings)
        if values:
            self.get_logger().info("parameters changed: " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
        return SetParametersResult(successful=True)

    def _apply_settings(self, settings):
        threshold_changed = settings.score_threshold != self._settings.score_threshold
        self._settings = settings
        for camera in self._cameras:
            self._advertise_debug_image(camera, settings.publish_debug_image)
        if threshold_changed and self.serving:
            self._publish_label_info()

    # -- input ------------------------------------------------------------------------------------

    def _make_callback(self, index, camera, frames):
        max_pixels = self._values["max_image_pixels"]

        def on_image(msg):
            received_ns = time.monotonic_ns()
            camera.statistics.count_received()
            decoder_warnings = []
            # One image at a time, with its log lines: the decoder's warnings are caught from the whole
            # process's stderr, where another callback's log line would be caught with them.
            with self._decoding:
                try:
                    if camera.topics.compressed:
                        image, color_order = decode_compressed_message(msg, max_pixels, decoder_warnings)
                    else:
                        image, color_order = decode_image_message(msg, max_pixels)
                except ImageMessageError as error:
                    camera.statistics.count_rejected()
                    self.get_logger().warning(f"rejected a message on {camera.topics.image}: {error}",
                                              throttle_duration_sec=WARNING_THROTTLE_S)
                    return
                if decoder_warnings:
                    self.get_logger().warning(
                        f"the decoder warned on {camera.topics.image}: {'; '.join(decoder_warnings)}",
                        throttle_duration_sec=WARNING_THROTTLE_S)
            replaced, run = frames.put(Frame(index, image, color_order, msg.header, received_ns))
            if replaced:
                camera.statistics.count_dropped()
            if run:
                self._run_model(frames)

        return on_image

    # -- inference and output ---------------------------------------------------------------------

    def _run_model(self, waiting):
        """Run the model on the ``waiting`` frames (LatestFrames), batch after batch, until none wait."""
        while frames := waiting.take():
            settings = self._settings
            started_ns = time.monotonic_ns()
            try:
                found = self._detector.detect_batch(
                    [f.image for f in frames],
                    [f.color_order for f in frames],
                    score_threshold=self._perception.detection_threshold(settings.score_threshold),
                    classes=settings.class_ids,
                    max_detections=settings.max_detections,
                    duplicate_iou=settings.duplicate_iou,
                )
            except Exception as error:  # a failed run (e.g. GPU out of memory) must not stop the node
                self.get_logger().error(f"inference failed: {error}", throttle_duration_sec=WARNING_THROTTLE_S)
                continue
            inference_ns = time.monotonic_ns() - started_ns
            for frame, detections in zip(frames, found):
                try:
                    self._publish_detections(frame, detections, settings, started_ns - frame.received_ns,
                                             inference_ns)
                except Exception as error:
                    if self.context.ok():  # after Ctrl-C the context is gone and publishing fails
                        self.get_logger().error(f"publishing failed: {error}",
                                                throttle_duration_sec=WARNING_THROTTLE_S)

    def _publish_detections(self, frame, detections, settings, wait_ns, inference_ns):
        camera = self._cameras[frame.camera]
        names = self._detector.class_names
        header = frame.header  # the received message is the node's alone: its header is reused
        camera_frame_id = header.frame_id
        if settings.frame_id:
            header.frame_id = settings.frame_id
        stamp_ns = messages.stamp_ns(frame.header)
        detections, ids = self._perception.track(frame.camera, detections, stamp_ns, settings.score_threshold)
        labels = messages.class_labels(detections.class_ids, names, settings.class_id_format)
        message = detection_cdr.detection_2d_array(header, detections.boxes, detections.scores, labels, ids)
        publish_started_ns = time.monotonic_ns()
        camera.detections.publish(message)
        # The latency figures are the 2D output's: taken before the 3D placement.
        published_ns = time.monotonic_ns()
        camera.statistics.record_published(published_ns - frame.received_ns, wait_ns, inference_ns,
                                           published_ns - publish_started_ns,
                                           self.get_clock().now().nanoseconds - stamp_ns)
        self._perception.publish_3d(frame.camera, header, stamp_ns, detections, ids, labels,
                                    (frame.image.shape[1], frame.image.shape[0]), camera_frame_id)
        debug_image = camera.debug_image
        if debug_image is not None and debug_image.get_subscription_count() > 0:
            drawn = draw_detections(frame.image, frame.color_order, detections.boxes, detections.scores,
                                    detections.class_ids, messages.class_labels(detections.class_ids, names, "name"))
            debug_image.publish(messages.image_message(header, drawn, "rgb8"))

    def _publish_label_info(self):
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self._settings.frame_id)
        message = messages.label_info(header, self._detector.class_names, self._settings.score_threshold)
        for camera in self._cameras:
            camera.label_info.publish(message)

    def _publish_diagnostics(self):
        now_ns = time.monotonic_ns()
        array = DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()))
        for camera in self._cameras:
            summary = camera.statistics.summary(now_ns)
            array.status.append(messages.stream_status(
                f"{self.get_name()}: {camera.subscription.topic_name}", self.get_fully_qualified_name(), summary,
                self._detector.provider))
        self._diagnostics.publish(array)


class DetectorNode(DetectorWork, Node):
    """Loads the model named by the parameters and serves every configured camera from the start."""

    def __init__(self, **node_options):
        Node.__init__(self, NODE_NAME, **node_options)
        self.declare_detector_parameters()
        self.load_model()
        self.start()

    def close(self, interrupted):
        """Called before the node is destroyed."""
        self.stop()


SUMMARY = "Detects objects in camera images with an ONNX model and publishes vision_msgs/Detection2DArray per camera."


def main(args=None):
    return run_node(DetectorNode, "detector", SUMMARY, PARAMETERS, args, threads=SPINNING_THREADS)


if __name__ == "__main__":
    sys.exit(main())
