"""The detector's parameters: documented defaults, start-up checks, runtime changes, label_info.

The node runs as its own process over real DDS with the shipped model; config/detector.yaml is
read by the real ROS parameter parser.
"""

import filecmp
import itertools
import time

import cv2
import numpy as np
import pytest
import yaml
from rcl_interfaces.msg import ParameterType, ParameterValue
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import LabelInfo

from detr_ros.ros import messages
from detr_ros.ros.detector_parameters import PARAMETERS, SPECS, default_model_path
from detr_ros.ros.parameters import STRING_ARRAY
from detr_ros.runtime import Detector
from detr_ros.synthetic.video import SceneVideo
from node_testing import (REPO_ROOT, SHIPPED_MODEL, NodeProcess, boxes_of, detections_by_stamp, set_parameters, stamp_ns,
                          start_detector)
from ros_testing import spin_until

CONFIG = REPO_ROOT / "config" / "detector.yaml"
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_config_file_documents_every_parameter_with_its_default():
    text = CONFIG.read_text()
    values = dict(_flatten(yaml.safe_load(text)["/**"]["ros__parameters"]))
    unset_lists = {spec.name for spec in PARAMETERS if spec.default == STRING_ARRAY}
    assert set(values) == set(SPECS) - unset_lists
    for name, value in values.items():
        assert value == SPECS[name].default, name
    lines = text.splitlines()
    for name in values:
        key = name.rsplit(".", 1)[-1]
        index = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
        assert lines[index - 1].strip().startswith("#"), f"{name} has no comment above it"
    for name in unset_lists:
        assert f"# {name}: [" in text, f"{name} is not shown in an example"


def test_default_model_is_the_shipped_one():
    assert filecmp.cmp(default_model_path(), SHIPPED_MODEL, shallow=False)


START_CASES = [
    (["-p", "score_threshold:=1.5"], ["score_threshold", "[0.0, 1.0]"]),
    (["-p", "max_detections:=many"], ["max_detections", "an integer in [1, 1000]"]),
    (["-p", "qos_reliability:=sometimes"], ["qos_reliability", "best_effort, reliable"]),
    (["-p", "class_id_format:=label"], ["class_id_format", "index, name"]),
    (["-p", "providers:=[gpu]"], ["providers", "tensorrt, cuda, cpu"]),
    (["-p", "image_topics:=[a/image, a/other]"], ["image_topics", "own namespace"]),
    (["-p", "classes:=[cat]"], ["classes", "'cat' is not a class of this model"]),
    (["-p", "model_path:=/nonexistent/model.onnx"], ["/nonexistent/model.onnx"]),
    (["-p", f"model_path:={CONFIG}"], [str(CONFIG)]),  # exists, not a model
]


def test_invalid_start_values_stop_the_node_with_a_message(ros_env, tmp_path):
    processes = [NodeProcess("detr_ros.ros.detector_node", ros_env, tmp_path,
                             {"model_path": str(SHIPPED_MODEL), "providers": ["cpu"]}, arguments)
                 for arguments, _ in START_CASES]
    for process, (arguments, expected) in zip(processes, START_CASES):
        code = process.wait(60)
        assert code == 2, f"{arguments}: exit code {code}\n{process.output}"
        for text in expected:
            assert text in process.output, f"{arguments}: {text!r} not in\n{process.output}"
        assert "Traceback" not in process.output and "listening to" not in process.output


def _frame_message(index, rgb):
    header = Header(frame_id="params")
    header.stamp.sec = 3000 + index
    return messages.image_message(header, rgb, "rgb8")


def test_runtime_changes_label_info_and_debug_image(ros_env, ros_context, tmp_path):
    detector = start_detector(ros_env, tmp_path, {"qos_reliability": "reliable", "qos_depth": 5},
                              arguments=["--params-file", str(CONFIG), "-p", "providers:=[cpu]",
                                         "-p", "qos_reliability:=reliable", "-r", "__node:=params_detector"])
    probe = Node("params_probe", context=ros_context)
    found, labels, debug = detections_by_stamp(probe, "detections"), [], []
    probe.create_subscription(Image, "debug_image", debug.append, RELIABLE)
    publisher = probe.create_publisher(Image, "image", RELIABLE)
    rgb = cv2.cvtColor(SceneVideo(480, 360, seed=21).frame(3)[0], cv2.COLOR_BGR2RGB)
    sent = 0

    def detect():
        nonlocal sent
        message = _frame_message(sent, rgb)
        sent += 1
        publisher.publish(message)
        key = stamp_ns(message.header)
        assert spin_until(ros_context, [probe], lambda: key in found, 30.0), detector.output
        return found[key]

    try:
        assert spin_until(ros_context, [probe], publisher.get_subscription_count, 20.0)
        time.sleep(1.0)
        # A subscriber that joins late still gets the label map (transient local).
        probe.create_subscription(LabelInfo, "label_info", labels.append, LATCHED)
        assert spin_until(ros_context, [probe], lambda: labels, 10.0)
        runtime = Detector(SHIPPED_MODEL)
        assert [(c.class_id, c.class_name) for c in labels[0].class_map] == list(enumerate(runtime.class_names))
        default_threshold = SPECS["score_threshold"].default
        assert labels[0].threshold == pytest.approx(default_threshold)

        base = detect()
        base_boxes, base_classes, base_scores = boxes_of(base)
        assert len(base_scores) >= 2 and np.all(base_scores >= default_threshold)
        assert spin_until(ros_context, [probe], lambda: debug, 10.0), "debug image while subscribed"
        assert (debug[-1].width, debug[-1].height, debug[-1].header.stamp) == (480, 360, base.header.stamp)

        higher = float(np.sort(base_scores)[-2]) - 1e-4  # keeps the two best detections
        assert all(r.successful for r in set_parameters(ros_context, probe, "params_detector",
                                                          {"score_threshold": higher}))
        assert spin_until(ros_context, [probe], lambda: labels[-1].threshold == pytest.approx(higher), 10.0)
        boxes, _, scores = boxes_of(detect())
        assert len(scores) == 2 and np.all(scores >= higher)

        wanted = runtime.class_names[int(base_classes[0])]
        assert all(r.successful for r in set_parameters(ros_context, probe, "params_detector", {
            "score_threshold": 0.5, "classes": [wanted], "class_id_format": "name", "frame_id": "override"}))
        result = detect()
        assert result.header.frame_id == "override"
        assert {d.results[0].hypothesis.class_id for d in result.detections} == {wanted}

        for values, reason in [
            ({"score_threshold": 2.0}, "score_threshold"),
            ({"class_id_format": "label"}, "expected one of index, name"),
            ({"classes": ["cat"]}, "'cat' is not a class of this model"),
            ({"max_detections": 0}, "max_detections"),
            ({"duplicate_iou": 1.5}, "duplicate_iou"),
            ({"model_path": "/other.onnx"}, "read-only"),
        ]:
            (result,) = set_parameters(ros_context, probe, "params_detector", values)
            assert not result.successful and reason in result.reason, (values, result.reason)
        result = detect()  # nothing changed by the refused requests
        assert result.header.frame_id == "override"
        assert {d.results[0].hypothesis.class_id for d in result.detections} == {wanted}
    finally:
        assert detector.stop() == 0, detector.output
        probe.destroy_node()
    assert "parameters changed: score_threshold=" in detector.output


def test_values_as_ros_tools_write_them_are_accepted(ros_env, ros_context, tmp_path):
    """Integers for floats (`-p score_threshold:=1`, `ros2 param set ... 0`), and `classes` cleared
    with "[]" (which `ros2 param set` sends as an empty bool array) or "['']"."""
    detector = start_detector(ros_env, tmp_path, {"qos_reliability": "reliable", "scor_threshold": 0.5},
                              arguments=["-p", "score_threshold:=1", "-p", "duplicate_iou:=1",
                                         "-r", "__node:=typed_detector"])
    probe = Node("typed_probe", context=ros_context)
    found, labels = detections_by_stamp(probe, "detections"), []
    probe.create_subscription(LabelInfo, "label_info", labels.append, LATCHED)
    publisher = probe.create_publisher(Image, "image", RELIABLE)
    rgb = cv2.cvtColor(SceneVideo(480, 360, seed=21).frame(3)[0], cv2.COLOR_BGR2RGB)
    frame_numbers = itertools.count()

    def detect():
        message = _frame_message(next(frame_numbers), rgb)
        publisher.publish(message)
        assert spin_until(ros_context, [probe], lambda: stamp_ns(message.header) in found, 30.0), detector.output
        return set(boxes_of(found[stamp_ns(message.header)])[1])

    try:
        assert "parameter scor_threshold is not a parameter of this node and is ignored; did you mean " \
               "score_threshold?" in detector.output
        assert spin_until(ros_context, [probe], lambda: labels and publisher.get_subscription_count(), 20.0)
        assert labels[-1].threshold == pytest.approx(1.0)
        assert detect() == set(), "score_threshold 1 (an integer) is in force"
        assert all(r.successful for r in set_parameters(ros_context, probe, "typed_detector",
                                                          {"score_threshold": 0}))
        assert spin_until(ros_context, [probe], lambda: labels[-1].threshold == pytest.approx(0.0), 10.0)
        every_class = detect()
        assert len(every_class) >= 2
        one = sorted(every_class)[0]
        assert set_parameters(ros_context, probe, "typed_detector", {"classes": [one]})[0].successful
        assert detect() == {one}
        empty_bool_array = ParameterValue(type=ParameterType.PARAMETER_BOOL_ARRAY, bool_array_value=[])
        for cleared in (empty_bool_array, [""], []):
            assert set_parameters(ros_context, probe, "typed_detector", {"classes": [one]})[0].successful
            (result,) = set_parameters(ros_context, probe, "typed_detector", {"classes": cleared})
            assert result.successful, (cleared, result.reason)
            assert detect() == every_class, f"classes {cleared} means all classes"
        for values, reason in [({"score_threshold": "high"}, "expected a number in [0.0, 1.0]"),
                               ({"score_threshold": True}, "expected a number"),
                               ({"classes": ParameterValue(type=ParameterType.PARAMETER_INTEGER_ARRAY,
                                                           integer_array_value=[1])}, "a list of strings")]:
            (result,) = set_parameters(ros_context, probe, "typed_detector", values)
            assert not result.successful and reason in result.reason, (values, result.reason)
    finally:
        assert detector.stop() == 0, detector.output
        probe.destroy_node()


def test_debug_image_is_advertised_only_while_enabled(ros_env, ros_context, tmp_path):
    detector = start_detector(ros_env, tmp_path, {"publish_debug_image": False},
                              arguments=["-r", "__node:=debug_detector"])
    probe = Node("debug_probe", context=ros_context)

    def publishers(topic):
        return probe.count_publishers(topic)

    try:
        assert spin_until(ros_context, [probe], lambda: publishers("/detections") == 1, 20.0)
        assert publishers("/debug_image") == 0
        assert set_parameters(ros_context, probe, "debug_detector", {"publish_debug_image": True})[0].successful
        assert spin_until(ros_context, [probe], lambda: publishers("/debug_image") == 1, 10.0)
        assert set_parameters(ros_context, probe, "debug_detector", {"publish_debug_image": False})[0].successful
        assert spin_until(ros_context, [probe], lambda: publishers("/debug_image") == 0, 10.0)
    finally:
        assert detector.stop() == 0, detector.output
        probe.destroy_node()
