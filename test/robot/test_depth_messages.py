"""Depth images and CameraInfo as messages, and pairing frames by stamp: plain functions, no ROS context."""

import threading

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
from detr_ros.ros.stamp_sync import StampBuffer
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


def test_the_nearest_stamp_within_tolerance_is_paired_and_a_late_one_is_waited_for():
    buffer = StampBuffer(capacity=3)
    for stamp in (100, 200, 300, 400):  # the oldest falls out
        buffer.put(stamp, stamp)
    assert buffer.nearest(210, tolerance_ns=20) == 200
    assert buffer.nearest(100, tolerance_ns=20) is None
    assert buffer.nearest(250, tolerance_ns=20) is None  # between two frames: neither is its own
    threading.Timer(0.05, buffer.put, (500, 500)).start()
    assert buffer.nearest(500, tolerance_ns=0, wait_s=5.0) == 500
