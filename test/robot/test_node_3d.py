"""3D from depth in the detector node, its own process over real DDS, against the synthetic camera's truth.

The synthetic camera publishes aligned depth (both encodings), its camera_info and the objects'
3D positions; the detector publishes Detection3DArray and MarkerArray for frames whose depth came,
and 2D detections for every frame, depth or not.
"""

import cv2
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray
from visualization_msgs.msg import MarkerArray

from detr_ros.ros import messages
from detr_ros.synthetic.video import SceneVideo
from node_testing import detections_by_stamp, play_synthetic_camera, start_detector
from ros_testing import spin_until

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
# The 3D target: centres within 2% of the distance for the typical object. Model boxes are a few
# pixels off the truth's, and the truth's centre is its box's; the median bounds the typical case.
CENTRE_TOLERANCE = 0.02


def _centres(message):
    return {d.id: np.array([d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z])
            for d in message.detections}


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_3d_centres_match_the_synthetic_truth_and_frames_without_depth_get_2d(ros_env, ros_context, tmp_path,
                                                                               encoding):
    frames = 12
    detector = start_detector(ros_env, tmp_path, {
        "image_topics": ["cam/image", "bare/image"], "depth_topics": ["cam/depth/image_raw", "bare/depth/image_raw"],
        "tracking": True, "qos_reliability": "reliable", "qos_depth": 5})
    probe = Node("depth_probe", context=ros_context)
    truth = detections_by_stamp(probe, "cam/ground_truth_3d", Detection3DArray)
    found = detections_by_stamp(probe, "cam/detections_3d", Detection3DArray)
    found_2d, markers = detections_by_stamp(probe, "cam/detections"), []
    probe.create_subscription(MarkerArray, "cam/markers", markers.append, RELIABLE)
    # The camera starts once someone listens to its 2D ground truth.
    probe.create_subscription(Detection2DArray, "cam/ground_truth", lambda m: None, RELIABLE)
    bare = detections_by_stamp(probe, "bare/detections")
    bare_images = probe.create_publisher(Image, "bare/image", RELIABLE)
    try:
        play_synthetic_camera(ros_env, ros_context, tmp_path, probe,
                              {"width": 320, "height": 240, "rate": 3.0, "frames": frames, "seed": 7,
                               "depth": encoding, "frame_id": "cam_optical", "wait_for_subscribers": 1},
                              lambda: truth and set(truth) <= set(found_2d), 90.0)
        header = Header(frame_id="bare")
        header.stamp.sec = 77
        bare_images.publish(messages.image_message(
            header, cv2.cvtColor(SceneVideo(320, 240, seed=7).frame(0)[0], cv2.COLOR_BGR2RGB), "rgb8"))
        assert spin_until(ros_context, [probe], lambda: bare, 20.0), "a camera whose depth never came got no 2D"
    finally:
        assert detector.stop() == 0, detector.output
        probe.destroy_node()

    with_3d = sorted(set(found) & set(truth))
    assert len(with_3d) >= frames * 3 // 4, f"{len(with_3d)} of {frames} frames got 3D:\n{detector.output}"
    errors = []
    for stamp in with_3d:
        assert found[stamp].header.frame_id == "cam_optical"
        assert {d.id for d in found[stamp].detections} <= {d.id for d in found_2d[stamp].detections}
        truth_centres = np.array(list(_centres(truth[stamp]).values()))
        for centre in _centres(found[stamp]).values():
            nearest = truth_centres[np.argmin(np.linalg.norm(truth_centres - centre, axis=1))]
            errors.append(np.linalg.norm(centre - nearest) / nearest[2])
    assert len(errors) >= 2 * len(with_3d)
    assert np.median(errors) <= CENTRE_TOLERANCE, f"median centre error {np.median(errors):.1%} of the distance"
    assert markers and any(m.type == m.CUBE for array in markers for m in array.markers)
    assert list(bare) == [77 * 1_000_000_000]
