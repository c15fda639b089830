"""The detector node runs every upstream format end to end: the committed export of each upstream,
given as model_path (with the options its user must give), answers the committed scene over DDS with
the detections that upstream's own inference code found (the golden files of test_formats)."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from detr_ros.ros import messages
from node_testing import boxes_of, detections_by_stamp, stamp_ns, start_detector
from ros_testing import spin_until
from test_formats import DATA, GOLDEN, golden, unmatched

RELIABLE = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)


def published_detections(array):
    """A Detection2DArray read back into the runtime's Detections fields (boxes, scores, class_ids)."""
    boxes, classes, scores = boxes_of(array)
    return SimpleNamespace(boxes=boxes, scores=scores, class_ids=np.array([int(c) for c in classes], np.int64))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_node_answers_with_the_upstreams_detections(name, ros_env, ros_context, tmp_path):
    record = golden(name)
    _, options = GOLDEN[name]
    detector = start_detector(ros_env, tmp_path, {
        "model_path": str(DATA / f"{name}.onnx"), "image_topics": ["cam/image"], "qos_reliability": "reliable",
        "score_threshold": record["score_threshold"], "duplicate_iou": 1.0, "max_detections": 300,
        "cpu_int8": False, "publish_debug_image": False, **options})
    probe = Node("formats_probe", context=ros_context)
    try:
        found = detections_by_stamp(probe, "cam/detections")
        publisher = probe.create_publisher(Image, "cam/image", RELIABLE)
        rgb = cv2.cvtColor(cv2.imread(str(DATA / record["image"])), cv2.COLOR_BGR2RGB)
        message = messages.image_message(Header(frame_id="cam"), rgb, "rgb8")
        message.header.stamp.sec = 42
        key = stamp_ns(message.header)
        # Repeated until answered: the first message may go out before the subscription matched.
        for _ in range(60):
            publisher.publish(message)
            if spin_until(ros_context, [probe], lambda: key in found, 0.5):
                break
        assert key in found, f"no answer from the node:\n{detector.output}"
        published = published_detections(found[key])
        assert len(published.scores) == len(record["scores"])
        assert not unmatched(record, published)
    finally:
        assert detector.stop() == 0, detector.output
        probe.destroy_node()
