"""The node's plain functions, without DDS: messages from arrays, topic mapping, parameter checks,
the latest-frame slots and the statistics."""

import array
import threading

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import Point, Pose, PoseWithCovariance, Vector3
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header
from vision_msgs.msg import (BoundingBox2D, BoundingBox3D, Detection2D, Detection2DArray, Detection3D, Detection3DArray,
                             ObjectHypothesis, ObjectHypothesisWithPose)
from visualization_msgs.msg import MarkerArray

from detr_ros.errors import ConfigError
from detr_ros.ros import detection_cdr, messages, spatial_messages
from detr_ros.ros.detector_parameters import (
    SPECS,
    camera_topics,
    cameras_from,
    class_ids_from,
    tensorrt_options,
)
from detr_ros.ros.image_conversion import decode_image_message
from detr_ros.ros.parameters import unknown_parameters
from detr_ros.ros.perception import depth_topics_for
from detr_ros.ros.latest_frames import Frame, LatestFrames
from detr_ros.ros.node_statistics import StreamStatistics
from detr_ros.runtime.depth import BoxesIn3D
from detr_ros.runtime.drawing import class_colour, draw_detections
from detr_ros.runtime.providers import TensorRTOptions

NAMES = ["bullseye", "checker_square", "ring"]


def header(sec=12, nanosec=345, frame_id="cam_optical"):
    message = Header(frame_id=frame_id)
    message.stamp.sec, message.stamp.nanosec = sec, nanosec
    return message


def read_2d(data):
    return deserialize_message(data, Detection2DArray)


def serialized_2d(source, boxes, scores, class_ids, names, class_id_format="index", ids=None):
    """The node's serialised Detection2DArray: class ids as labels, then detection_cdr."""
    return detection_cdr.detection_2d_array(source, boxes, scores, messages.class_labels(class_ids, names,
                                                                                         class_id_format), ids)


def test_detection_array_has_centre_size_boxes_and_the_frame_header():
    boxes = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 4.0, 2.0]], np.float32)
    source = header()
    array = read_2d(serialized_2d(source, boxes, np.array([0.9, 0.6], np.float32), np.array([2, 0]), NAMES))
    assert (array.header.stamp, array.header.frame_id) == (source.stamp, "cam_optical")
    first, second = array.detections
    assert (first.bbox.center.position.x, first.bbox.center.position.y) == (30.0, 60.0)
    assert (first.bbox.size_x, first.bbox.size_y) == (40.0, 80.0)
    assert first.results[0].hypothesis.class_id == "2"
    assert first.results[0].hypothesis.score == pytest.approx(0.9)
    assert first.results[0].pose.pose.orientation.w == 1.0 and not any(first.results[0].pose.covariance)
    assert [d.id for d in array.detections] == ["", ""], "no ids without a tracker"
    assert all(d.header == array.header for d in array.detections)
    assert (second.bbox.center.position.x, second.bbox.size_y) == (2.0, 2.0)


def test_class_names_as_class_ids():
    array = read_2d(serialized_2d(header(), np.zeros((1, 4)), np.ones(1), np.array([1]), NAMES, "name"))
    assert array.detections[0].results[0].hypothesis.class_id == "checker_square"


def test_empty_frame_gives_empty_array_with_header():
    array = read_2d(serialized_2d(header(), np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), NAMES))
    assert array.detections == [] and array.header.stamp.sec == 12


def _expected_2d(source, boxes, scores, labels, ids):
    """The Detection2DArray built field by field with rclpy's message classes."""
    detections = []
    for (x0, y0, x1, y1), score, label, track_id in zip(boxes.tolist(), scores.tolist(), labels, ids):
        box = BoundingBox2D(size_x=x1 - x0, size_y=y1 - y0)
        box.center.position.x, box.center.position.y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        hypothesis = ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id=label, score=score))
        detections.append(Detection2D(header=source, results=[hypothesis], bbox=box, id=track_id))
    return Detection2DArray(header=source, detections=detections)


def _expected_3d(source, centres, sizes, scores, labels, ids):
    """The Detection3DArray built field by field with rclpy's message classes."""
    detections = []
    for centre, size, score, label, track_id in zip(centres.tolist(), sizes.tolist(), scores.tolist(), labels, ids):
        pose = Pose(position=Point(x=centre[0], y=centre[1], z=centre[2]))
        hypothesis = ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id=label, score=score),
                                              pose=PoseWithCovariance(pose=pose))
        box = BoundingBox3D(center=pose, size=Vector3(x=size[0], y=size[1], z=size[2]))
        detections.append(Detection3D(header=source, results=[hypothesis], bbox=box, id=track_id))
    return Detection3DArray(header=source, detections=detections)


@pytest.mark.parametrize("count", [0, 1, 2, 3, 31])
def test_serialized_arrays_read_as_the_messages_rclpy_builds_and_are_as_long(count):
    """Any mix of string lengths shifts the alignment of what follows: labels, ids and frame ids of 0 to 6
    bytes (some two-byte characters), and every value read back as it was given."""
    rng = np.random.default_rng(count)
    names = ["", "a", "bé", "car", "truck", "person"]
    source = header(sec=1_700_000_000, nanosec=999_999_999, frame_id="cam_é"[: count % 6])
    boxes = rng.uniform(-10.0, 650.0, (count, 4))
    scores, class_ids = rng.uniform(0.0, 1.0, count), rng.integers(0, len(names), count)
    ids = [str(rng.integers(0, 10 ** rng.integers(0, 6))) if row % 3 else "" for row in range(count)]
    labels = messages.class_labels(class_ids, names, "name")
    for fmt, expected_labels in (("name", labels), ("index", [str(c) for c in class_ids.tolist()])):
        data = serialized_2d(source, boxes, scores, class_ids, names, fmt, ids)
        expected = _expected_2d(source, boxes, scores, expected_labels, ids)
        assert read_2d(data) == expected and len(data) == len(serialize_message(expected))
    placed = BoxesIn3D(centres=rng.normal(0.0, 5.0, (count, 3)), sizes=rng.uniform(0.0, 2.0, (count, 3)),
                       valid=rng.uniform(size=count) < 0.7)
    rows = np.flatnonzero(placed.valid)
    data = spatial_messages.serialized_detection_3d_array(source, placed, scores, labels, ids)
    expected = _expected_3d(source, placed.centres[rows], placed.sizes[rows], scores[rows],
                            [labels[row] for row in rows], [ids[row] for row in rows])
    assert deserialize_message(data, Detection3DArray) == expected and len(data) == len(serialize_message(expected))


def test_the_encoding_check_passes_on_this_middleware():
    detection_cdr.check_encoding()


def test_marker_array_boxes_and_labels_the_detections_placed_in_3d_after_deleting_the_previous_ones():
    placed = BoxesIn3D(centres=np.array([[0.5, 0.2, 3.0], [9.0, 9.0, 9.0], [-1.0, 0.0, 5.0]]),
                       sizes=np.array([[0.4, 0.6, 0.1], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]),
                       valid=np.array([True, False, True]))
    data = spatial_messages.serialized_marker_array(header(sec=1), "cam/image", placed, np.array([2, 1, 0]),
                                                    ["4", "5", ""], NAMES)
    markers = deserialize_message(data, MarkerArray).markers
    assert len(data) == len(serialize_message(deserialize_message(data, MarkerArray)))
    delete_all, box, label = markers[:3]
    assert delete_all.action == delete_all.DELETEALL and len(markers) == 5
    assert {marker.ns for marker in markers} == {"cam/image"} and {m.header.stamp.sec for m in markers} == {1}
    assert (box.type, box.id, label.type, label.id) == (box.CUBE, 0, label.TEXT_VIEW_FACING, 1)
    assert (box.pose.position.x, box.pose.position.z, box.scale.y, label.text) == (0.5, 3.0, 0.6, "ring #4")
    assert box.pose.orientation.w == 1.0 and label.pose.position.y == pytest.approx(0.2 - 0.3 - 0.12)
    assert (box.color.r, box.color.g, box.color.b) == pytest.approx([c / 255.0 for c in class_colour(2)])
    assert box.color.a == pytest.approx(0.45) and (label.color.a, label.scale.z) == pytest.approx((1.0, 0.12))
    assert (box.lifetime.sec, box.lifetime.nanosec, label.lifetime.sec) == (1, 0, 1)
    assert markers[4].text == "bullseye" and markers[3].scale.z == 0.01  # a flat object still shows
    assert markers[3].id == 2 and markers[3].pose.position.x == -1.0


def test_label_info_maps_indices_to_names():
    info = messages.label_info(header(), NAMES, 0.35)
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(0, "bullseye"), (1, "checker_square"), (2, "ring")]
    assert info.threshold == pytest.approx(0.35)


def test_image_message_decodes_back():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image, order = decode_image_message(messages.image_message(header(), rgb, "bgr8"))
    assert order == "bgr"
    np.testing.assert_array_equal(image[:, :, ::-1], rgb)


@pytest.mark.parametrize(
    "topic, compressed, expected",
    [
        ("image", False, ("image", False, "detections", "label_info", "debug_image")),
        ("/front/image_raw", False, ("/front/image_raw", False, "/front/detections", "/front/label_info",
                                     "/front/debug_image")),
        ("left/image_raw", True, ("left/image_raw/compressed", True, "left/detections", "left/label_info",
                                  "left/debug_image")),
        ("left/image_raw/compressed", False, ("left/image_raw/compressed", True, "left/detections",
                                              "left/label_info", "left/debug_image")),
        ("/image", False, ("/image", False, "/detections", "/label_info", "/debug_image")),
    ],
)
def test_camera_topics(topic, compressed, expected):
    topics = camera_topics(topic, compressed)
    assert (topics.image, topics.compressed, topics.detections, topics.label_info, topics.debug_image) == expected


def test_cameras_sharing_a_namespace_are_refused():
    with pytest.raises(ConfigError, match="would both publish cam/detections"):
        cameras_from(["cam/image_raw", "cam/image_rect"], False)
    with pytest.raises(ConfigError, match="image_topics: empty"):
        cameras_from([], False)
    with pytest.raises(ConfigError, match="not an image topic name"):
        cameras_from(["/compressed"], False)


def test_class_allow_list_from_names_or_indices():
    assert class_ids_from(None, NAMES) is None
    assert class_ids_from([], NAMES) is None
    assert class_ids_from(["ring", "0"], NAMES) == [2, 0]
    with pytest.raises(ConfigError, match=r"'cat' is not a class of this model.*bullseye.*indices 0\.\.2"):
        class_ids_from(["cat"], NAMES)
    with pytest.raises(ConfigError, match="'3' is not a class"):
        class_ids_from(["3"], NAMES)


def test_parameter_checks_name_the_allowed_values():
    assert SPECS["qos_reliability"].problem("sometimes") == "got 'sometimes', expected one of best_effort, reliable"
    assert SPECS["providers"].problem(["cpu", "gpu"]) == "got ['cpu', 'gpu'], expected a list of tensorrt, cuda, cpu"
    assert SPECS["providers"].problem([]) is not None
    assert SPECS["providers"].problem(["cuda", "cpu"]) is None
    assert SPECS["score_threshold"].problem(1.5) == "got 1.5, expected a number in [0.0, 1.0]"
    assert SPECS["max_detections"].allowed() == "an integer in [1, 1000]"
    assert SPECS["class_id_format"].problem("name") is None


def test_parameter_types_as_ros_tools_send_them():
    """An integer for a float, any empty array (or blank entries) for a list; other types refused."""
    threshold, classes = SPECS["score_threshold"], SPECS["classes"]
    assert threshold.problem(1) is None and threshold.normalized(1) == 1.0
    assert isinstance(threshold.normalized(1), float)
    assert threshold.problem(True) == "got True, expected a number in [0.0, 1.0]"
    assert threshold.problem("0.5") is not None
    for cleared in ([], [""], ["  "], None, array.array("q")):
        assert classes.problem(cleared) is None and classes.normalized(cleared) == [], cleared
    assert classes.problem(array.array("q", [1])) == "got array('q', [1]), expected a list of strings"
    assert SPECS["max_detections"].problem(2.0) is not None and SPECS["max_detections"].problem(True) is not None
    assert SPECS["publish_debug_image"].problem("true") == "got 'true', expected true or false"
    assert SPECS["providers"].problem(None) is not None, "only a list that starts unset may be unset"


def test_depth_topics_keep_a_blank_entry_for_a_camera_without_depth():
    given = SPECS["depth_topics"].normalized(["front/depth/image_raw", ""])
    assert depth_topics_for(given, 2) == ["front/depth/image_raw", None]
    for cleared in ([], [""], ["", ""], None):
        assert depth_topics_for(SPECS["depth_topics"].normalized(cleared), 2) == [None, None], cleared
    with pytest.raises(ConfigError, match="depth_topics: 1 entries for 2 image_topics"):
        depth_topics_for(["front/depth/image_raw"], 2)


def test_unknown_parameters_are_named_with_the_nearest_known_one():
    warnings = unknown_parameters(["scor_threshold", "score_threshold", "qos_overrides./image.subscription.depth",
                                   "zzz"], SPECS)
    assert warnings == [
        "parameter scor_threshold is not a parameter of this node and is ignored; did you mean score_threshold?",
        "parameter zzz is not a parameter of this node and is ignored",
    ]


def test_tensorrt_parameters_are_accepted_by_the_runtime():
    values = {name: spec.default for name, spec in SPECS.items() if name.startswith("tensorrt.")}
    values["tensorrt.int8"] = "false"
    options = TensorRTOptions.from_dict(tensorrt_options(values))
    assert options.int8 is False and options.workspace_bytes == 2048 << 20


def frame(camera, tag):
    return Frame(camera, np.full((2, 2, 3), tag, np.uint8), "rgb", header(sec=tag), received_ns=tag)


def test_latest_frames_keeps_newest_per_camera_and_reports_drops():
    slots = LatestFrames(2)
    assert slots.put(frame(0, 1)) == (False, True)  # the model is idle: this caller runs it
    assert slots.put(frame(0, 2)) == (True, False)  # replaced frame 1 before it was taken
    assert slots.put(frame(1, 3)) == (False, False)  # the run in progress takes it
    taken = slots.take()
    assert [(f.camera, f.header.stamp.sec) for f in taken] == [(0, 2), (1, 3)]
    assert slots.put(frame(1, 4)) == (False, False)  # taken frames do not count as dropped
    assert [f.header.stamp.sec for f in slots.take()] == [4]
    assert slots.take() == []  # nothing waits: the run ends
    assert slots.put(frame(0, 5)) == (False, True)  # so the next caller runs the model


def test_latest_frames_close_waits_for_the_run_and_starts_no_more():
    slots = LatestFrames(1)
    assert slots.put(frame(0, 1)) == (False, True)
    closed = threading.Event()
    closer = threading.Thread(target=lambda: (slots.close(timeout=5), closed.set()))
    closer.start()
    assert not closed.wait(0.1), "close returned while a run was in progress"
    assert slots.take() == []  # once closed, the run takes nothing and ends
    closer.join(timeout=5)
    assert closed.is_set()
    assert slots.put(frame(0, 2)) == (False, False)


def test_statistics_summarise_one_period_and_keep_totals():
    stats = StreamStatistics(now_ns=0)
    for _ in range(10):
        stats.count_received()
    stats.count_rejected()
    stats.count_dropped()
    for latency_ms in range(1, 101):
        stats.record_published(latency_ms * 1_000_000, latency_ms * 10_000, (latency_ms - 1) * 1_000_000,
                               latency_ms * 100_000, 2 * latency_ms * 1_000_000)
    summary = stats.summary(now_ns=2_000_000_000)
    assert (summary.input_hz, summary.output_hz) == (5.0, 50.0)
    assert summary.latency_p50_ms == pytest.approx(50.5)
    assert summary.latency_p99_ms == pytest.approx(99.01)
    assert summary.age_max_ms == pytest.approx(200.0)
    assert (summary.inference_p50_ms, summary.overhead_p50_ms) == (pytest.approx(49.5), pytest.approx(1.0))
    assert (summary.wait_p50_ms, summary.publish_p50_ms) == (pytest.approx(0.505), pytest.approx(5.05))
    assert (summary.received_total, summary.dropped_total, summary.rejected_total) == (10, 1, 1)
    later = stats.summary(now_ns=3_000_000_000)
    assert later.input_hz == 0.0 and np.isnan(later.latency_p50_ms) and later.rejected_in_period == 0
    assert later.rejected_total == 1

    status = messages.stream_status("detr_detector: /image", "/detr_detector", later, "CPUExecutionProvider")
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.WARN and status.message == "no images received"
    assert values["latency_p50_ms"] == "n/a" and values["rejected"] == "1" and values["provider"] == "CPUExecutionProvider"
    assert messages.stream_status("n", "h", summary, "cpu").message == "rejected 1 malformed images"


def test_debug_image_draws_boxes_on_a_copy():
    image = np.zeros((60, 80, 3), np.uint8)
    drawn = draw_detections(image, "bgr", np.array([[10.0, 20.0, 50.0, 50.0]]), np.array([0.8]), np.array([1]),
                            ["checker_square"])
    assert not image.any(), "the camera frame must stay untouched"
    assert drawn[35, 10].any() and drawn[35, 50].any(), "left and right edges drawn"
    assert not drawn[35, 30].any(), "box inside left clear"
