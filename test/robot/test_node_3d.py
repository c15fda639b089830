"""3D from depth in the detector node, its own process over real DDS, against the synthetic camera's truth.

The synthetic camera publishes aligned depth (both encodings), its camera_info and the objects'
3D positions; the detector publishes Detection3DArray and MarkerArray for frames whose depth came,
before or after their 2D detections, and 2D detections for every frame, depth or not, without
waiting for depth.
"""

import cv2
import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, Detection3DArray
from visualization_msgs.msg import MarkerArray

from detr_ros.ros import messages
from detr_ros.ros.depth_messages import camera_info_message, depth_image_message
from detr_ros.runtime.depth import CameraIntrinsics
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


def test_a_frame_waiting_for_its_depth_holds_up_nothing_and_is_placed_when_its_depth_comes(ros_env, ros_context,
                                                                                             tmp_path):
    # Were a frame to hold up the model while it waits for its depth, the next frame's 2D would come only
    # after this wait, far longer than the test waits for it.
    detector = start_detector(ros_env, tmp_path, {
        "image_topics": ["late/image"], "depth_topics": ["late/depth/image_raw"], "depth_wait_s": 10.0,
        "qos_reliability": "reliable", "qos_depth": 5})
    probe = Node("late_depth_probe", context=ros_context)
    found_2d = detections_by_stamp(probe, "late/detections")
    found_3d = detections_by_stamp(probe, "late/detections_3d", Detection3DArray)
    images = probe.create_publisher(Image, "late/image", RELIABLE)
    depths = probe.create_publisher(Image, "late/depth/image_raw", RELIABLE)
    camera_info = probe.create_publisher(CameraInfo, "late/depth/camera_info", RELIABLE)
    video = SceneVideo(320, 240, seed=7)
    rendered = [video.render(index) for index in range(6)]
    headers = [Header(frame_id="late_optical") for _ in rendered]
    for index, header in enumerate(headers):
        header.stamp.sec = 10 + index
    stamps = [messages.stamp_ns(header) for header in headers]

    def publish_image(index):
        images.publish(messages.image_message(headers[index], cv2.cvtColor(rendered[index].bgr, cv2.COLOR_BGR2RGB),
                                              "rgb8"))

    def publish_depth(index, frame_id="late_optical"):
        header = Header(stamp=headers[index].stamp, frame_id=frame_id)
        depths.publish(depth_image_message(header, rendered[index].depth_m, "16UC1"))

    try:
        assert spin_until(ros_context, [probe], lambda: all(
            p.get_subscription_count() for p in (images, depths, camera_info)), 30.0), detector.output
        # Frame 0 and its depth come before any camera_info: 2D only, and the operator is told why.
        publish_depth(0)
        publish_image(0)
        assert spin_until(ros_context, [probe], lambda: stamps[0] in found_2d, 30.0), detector.output
        assert detector.wait_for_output("no camera_info has come on /late/depth/camera_info", 10.0), detector.output
        camera_info.publish(camera_info_message(headers[0], video.intrinsics))
        publish_image(1)
        assert spin_until(ros_context, [probe], lambda: stamps[1] in found_2d, 10.0)
        publish_image(2)
        assert spin_until(ros_context, [probe], lambda: stamps[2] in found_2d, 5.0), \
            "a frame waiting for its depth held up the next frame"
        publish_depth(1)
        publish_depth(2)
        assert spin_until(ros_context, [probe], lambda: {stamps[1], stamps[2]} <= set(found_3d), 10.0), \
            "frames whose depth came after their 2D detections were not placed in 3D"
        # Frame 3's depth never comes; frame 4's comes first. Its stamp shows frame 3's lost.
        publish_image(3)
        assert spin_until(ros_context, [probe], lambda: stamps[3] in found_2d, 5.0)
        # Frame 4's depth names another frame than its colour image: placed, but the operator is warned
        # (as never before, while the two named the same frame).
        assert "the depth images on" not in detector.output, detector.output
        publish_depth(4, frame_id="late_depth_optical")
        publish_image(4)
        assert spin_until(ros_context, [probe], lambda: stamps[4] in found_3d, 10.0)
        assert detector.wait_for_output("a frame got 2D detections only: the nearest depth frame on "
                                        "/late/depth/image_raw is stamped 1.000 s from it", 10.0), detector.output
        assert detector.wait_for_output("the depth images on /late/depth/image_raw are in frame 'late_depth_optical', "
                                        "the colour images in 'late_optical'", 10.0), detector.output
        # A camera_info of other images than the depth images (here twice their size): 2D only, and why.
        camera_info.publish(camera_info_message(headers[5], CameraIntrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)))
        spin_until(ros_context, [probe], lambda: False, 1.0)  # the camera_info is in before frame 5
        publish_depth(5)
        publish_image(5)
        assert spin_until(ros_context, [probe], lambda: stamps[5] in found_2d, 10.0)
        assert detector.wait_for_output("no 3D detections: the depth image on /late/depth/image_raw is 320x240 "
                                        "pixels, but the camera_info on /late/depth/camera_info describes 640x480",
                                        10.0), detector.output
        spin_until(ros_context, [probe], lambda: False, 0.5)
    finally:
        assert detector.stop() == 0, detector.output
        probe.destroy_node()

    assert sorted(found_3d) == [stamps[1], stamps[2], stamps[4]]
    for stamp in found_3d:
        assert found_3d[stamp].header.frame_id == "late_optical"
        assert len(found_3d[stamp].detections) == len(found_2d[stamp].detections) > 0
