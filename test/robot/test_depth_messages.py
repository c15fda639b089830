"""Depth images and CameraInfo as messages, and pairing frames by stamp: plain functions, no ROS context."""

import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from detr_ros.ros.depth_messages import (
    camera_info_message,
    decode_depth_message,
    depth_image_message,
    intrinsics_from_camera_info,
)
from detr_ros.ros.image_conversion import ImageMessageError
from detr_ros.ros.stamp_sync import StampPairing
from detr_ros.runtime.depth import CameraIntrinsics, depth_in_metres


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_depth_images_round_trip_in_both_encodings(encoding):
    depth = np.array([[1.234, np.nan, 3.0], [0.5, 2.0, 7.25]], np.float32)
    depth_back, encoding_back = decode_depth_message(depth_image_message(Header(), depth, encoding))
    metres = depth_in_metres(depth_back, encoding_back)
    assert np.array_equal(np.isnan(metres), np.isnan(depth))
    # Millimetres round to the millimetre.
    np.testing.assert_allclose(metres[~np.isnan(depth)], depth[~np.isnan(depth)], atol=5e-4)


def test_big_endian_padded_depth_is_read_by_its_step():
    millimetres = np.array([[1000, 2000], [3000, 4000]], ">u2")
    padded = np.zeros((2, 6), np.uint8)
    padded[:, :4] = millimetres.view(np.uint8).reshape(2, 4)
    msg = Image(height=2, width=2, encoding="16UC1", is_bigendian=1, step=6, data=padded.tobytes())
    depth, _ = decode_depth_message(msg)
    assert depth.tolist() == [[1000, 2000], [3000, 4000]]


def test_a_colour_encoding_or_a_short_buffer_is_refused_as_depth():
    with pytest.raises(ImageMessageError, match="16UC1"):
        decode_depth_message(Image(height=1, width=1, encoding="rgb8", step=3, data=b"abc"))
    with pytest.raises(ImageMessageError, match="bytes"):
        decode_depth_message(Image(height=2, width=2, encoding="16UC1", step=4, data=b"\0" * 6))


def test_camera_info_carries_the_intrinsics():
    intrinsics = CameraIntrinsics(525.0, 520.0, 319.5, 239.5, 640, 480)
    assert intrinsics_from_camera_info(camera_info_message(Header(), intrinsics)) == intrinsics


def test_camera_info_intrinsics_describe_the_published_image_after_its_region_of_interest_and_binning():
    sensor = CameraIntrinsics(1000.0, 990.0, 640.0, 360.0, 1280, 720)
    info = camera_info_message(Header(), sensor)
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 200, 100, 800, 400
    info.binning_x, info.binning_y = 2, 4
    image = intrinsics_from_camera_info(info)
    assert (image.width, image.height) == (400, 100)
    # A point projects where the sensor sees it, moved by the crop and shrunk by the binning.
    point = np.array([0.3, -0.2, 2.5])
    u_sensor, v_sensor = (sensor.fx * point[0] / point[2] + sensor.cx, sensor.fy * point[1] / point[2] + sensor.cy)
    u_image, v_image = image.fx * point[0] / point[2] + image.cx, image.fy * point[1] / point[2] + image.cy
    assert (u_image, v_image) == pytest.approx(((u_sensor - 200) / 2, (v_sensor - 100) / 4))
    info.binning_x, info.binning_y = 0, 1  # 0 and 1 both mean none
    info.roi.width = info.roi.height = 0  # the whole sensor, whatever the offsets say
    assert intrinsics_from_camera_info(info) == sensor


def test_detections_take_the_nearest_depth_that_came_and_wait_for_one_still_to_come():
    pairing = StampPairing(tolerance_ns=20, wait_ns=1000, capacity=3)
    for stamp in (100, 200, 300, 400):  # the oldest falls out
        assert pairing.add_depth(stamp, f"depth {stamp}", now_ns=0) == []
    assert pairing.add_detections(210, "a", now_ns=0) == "depth 200"
    assert pairing.add_detections(100, "b", now_ns=0) is None  # its depth fell out, and later ones came
    assert pairing.add_detections(250, "c", now_ns=0) is None  # between two depth frames: neither is its own
    assert pairing.add_detections(500, "d", now_ns=0) is None  # waits
    assert pairing.add_detections(600, "e", now_ns=0) is None  # waits
    assert pairing.add_depth(505, "depth 505", now_ns=10) == ["d"]
    assert pairing.add_detections(505, "f", now_ns=10) == "depth 505"
    assert pairing.add_depth(600, "depth 600", now_ns=20) == ["e"]  # paired once only
    assert pairing.add_depth(600, "depth 600 again", now_ns=20) == []
    assert pairing.take_unpaired() == [100, 50]  # b and c, each with its nearest depth stamp's distance
    assert pairing.take_unpaired() == []


def test_waiting_detections_are_let_go_when_their_depth_is_shown_lost_or_too_late():
    pairing = StampPairing(tolerance_ns=20, wait_ns=1000)
    for stamp in (100, 200, 300):
        pairing.add_detections(stamp, stamp, now_ns=0)
    assert pairing.add_depth(200, "depth 200", now_ns=10) == [200]  # 100's depth was lost
    assert pairing.add_depth(100, "depth 100, out of order", now_ns=20) == []
    assert pairing.add_depth(300, "depth 300", now_ns=1001) == []  # its wait was over
    assert pairing.take_unpaired() == [100, 0]


def test_depth_stamps_jumping_back_drop_the_depth_frames_of_before():
    # A recording replayed from its start: frames of its first pass would show every new frame's depth lost.
    pairing = StampPairing(tolerance_ns=20, wait_ns=1000)
    for stamp in (1000, 1100):
        pairing.add_depth(stamp, f"depth {stamp}", now_ns=0)
    pairing.add_depth(100, "depth 100", now_ns=0)
    assert pairing.add_detections(200, "a", now_ns=0) is None  # waits for its depth
    assert pairing.add_depth(200, "depth 200", now_ns=10) == ["a"]
    assert pairing.add_detections(110, "b", now_ns=10) == "depth 100"
    assert pairing.take_unpaired() == []


def test_detections_waiting_past_the_capacity_are_let_go_oldest_first():
    pairing = StampPairing(tolerance_ns=20, wait_ns=10**9, capacity=2)
    for stamp in (100, 200, 300):
        assert pairing.add_detections(stamp, stamp, now_ns=0) is None
    assert pairing.take_unpaired() == [None]  # no depth frame had come
    assert pairing.add_depth(300, "depth 300", now_ns=0) == [300]
