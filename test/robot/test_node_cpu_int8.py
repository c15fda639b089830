"""On the CPU the detector runs the INT8 file that sits beside its model, says so, and cpu_int8 false
turns that off: two detector processes over real DDS, each answering with its file's detections."""

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from detr_ros.ros import messages
from detr_ros.runtime import Detector
from detr_ros.synthetic.video import SceneVideo
from node_testing import SHIPPED_MODEL, boxes_of, detections_by_stamp, stamp_ns, start_detector
from ros_testing import spin_until

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
SHIPPED_INT8 = SHIPPED_MODEL.with_name("synthetic_rtdetr.int8.onnx")
THRESHOLD = 0.3


def test_the_int8_file_beside_the_model_is_run_and_logged_unless_cpu_int8_is_false(ros_env, ros_context, tmp_path):
    common = {"qos_reliability": "reliable", "score_threshold": THRESHOLD}
    detectors = {
        "int8": start_detector(ros_env, tmp_path, {**common, "image_topics": ["int8/image"]},
                               arguments=["-r", "__node:=int8_detector"]),
        "fp32": start_detector(ros_env, tmp_path, {**common, "image_topics": ["fp32/image"], "cpu_int8": False},
                               arguments=["-r", "__node:=fp32_detector"]),
    }
    probe = Node("cpu_int8_probe", context=ros_context)
    found, publishers = {}, {}
    for name in detectors:
        found[name] = detections_by_stamp(probe, f"{name}/detections")
        publishers[name] = probe.create_publisher(Image, f"{name}/image", RELIABLE)
    rgb = cv2.cvtColor(SceneVideo(480, 360, seed=31).frame(2)[0], cv2.COLOR_BGR2RGB)
    header = Header(frame_id="camera")
    header.stamp.sec = 4000
    try:
        assert spin_until(ros_context, [probe], lambda: all(p.get_subscription_count() for p in publishers.values()),
                          20.0)
        for publisher in publishers.values():
            publisher.publish(messages.image_message(header, rgb, "rgb8"))
        assert spin_until(ros_context, [probe], lambda: all(found.values()), 30.0), \
            {name: detector.output for name, detector in detectors.items()}
    finally:
        outputs = {name: (detector.stop(), detector.output) for name, detector in detectors.items()}
        probe.destroy_node()

    for name, (code, output) in outputs.items():
        assert code == 0, output
    int8_log, fp32_log = outputs["int8"][1], outputs["fp32"][1]
    assert "running synthetic_rtdetr.int8.onnx, the INT8 file beside synthetic_rtdetr.onnx, on the CPU" in int8_log
    assert f"model {SHIPPED_INT8} " in int8_log
    assert "int8" not in fp32_log.lower()
    assert f"model {SHIPPED_MODEL} " in fp32_log
    # Each node answers with the detections of the file it says it runs.
    for name, path in (("int8", SHIPPED_INT8), ("fp32", SHIPPED_MODEL)):
        expected = Detector(path, score_threshold=THRESHOLD).detect(rgb, "rgb")
        boxes, classes, scores = boxes_of(found[name][stamp_ns(header)])
        assert len(scores) > 0
        assert classes == [str(c) for c in expected.class_ids.tolist()]
        np.testing.assert_allclose(boxes, expected.boxes, atol=0.05)
        np.testing.assert_allclose(scores, expected.scores, atol=1e-3)
