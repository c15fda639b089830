"""Depth images and camera intrinsics <-> ROS messages, without cv_bridge and without a ROS context.

Depth images are sensor_msgs/Image in 16UC1 (millimetres) or 32FC1 (metres), the two REP 118
allows; row padding (``step``) and ``is_bigendian`` are honoured. Intrinsics come from
sensor_msgs/CameraInfo's K and image size, for the image as published: with its region of interest
and binning applied (REP 104), as image_geometry applies them.
"""

import array
import dataclasses

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from detr_ros.ros.image_conversion import MAX_IMAGE_SIDE, ImageMessageError
from detr_ros.runtime.depth import DEPTH_ENCODINGS, CameraIntrinsics

_DTYPES = {"16UC1": "u2", "32FC1": "f4"}


def decode_depth_message(msg):
    """(depth [H, W] uint16 millimetres or float32 metres, encoding) of a sensor_msgs/Image; the array may
    be a read-only view into the message. Raises ImageMessageError naming what is wrong."""
    if msg.encoding not in DEPTH_ENCODINGS:
        raise ImageMessageError(f"depth encoding '{msg.encoding}', expected one of {', '.join(DEPTH_ENCODINGS)}")
    width, height, step = msg.width, msg.height, msg.step
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise ImageMessageError(f"depth image size {width}x{height} is empty or beyond {MAX_IMAGE_SIDE} a side")
    dtype = np.dtype(_DTYPES[msg.encoding]).newbyteorder(">" if msg.is_bigendian else "<")
    row_bytes = width * dtype.itemsize
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    if step < row_bytes or raw.size != step * height:
        raise ImageMessageError(f"depth data has {raw.size} bytes with step {step}, expected step >= {row_bytes} "
                                f"and step * height = {step * height}")
    depth = raw.reshape(height, step)[:, :row_bytes].view(dtype)
    return depth.astype(dtype.newbyteorder("="), copy=False), msg.encoding


def depth_image_message(header, depth_m, encoding):
    """sensor_msgs/Image of a depth image in metres (float [H, W], NaN: no reading) as 16UC1 or 32FC1."""
    if encoding == "16UC1":
        pixels = np.where(np.isfinite(depth_m), np.round(depth_m * 1000.0), 0).clip(0, 65535).astype("<u2")
    elif encoding == "32FC1":
        pixels = np.asarray(depth_m, "<f4")
    else:
        raise ImageMessageError(f"depth encoding '{encoding}', expected one of {', '.join(DEPTH_ENCODINGS)}")
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(pixels).tobytes())
    return Image(header=header, height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=0,
                 step=pixels.shape[1] * pixels.itemsize, data=data)


def intrinsics_from_camera_info(msg):
    """CameraIntrinsics of the images a sensor_msgs/CameraInfo describes (ConfigError when K or the size is
    unusable).

    K and the size are the full sensor's. A region of interest (zero width or height: the whole
    sensor) crops the image, moving the principal point by its offset; binning (0 or 1: none)
    divides the cropped image's pixel coordinates and size.
    """
    binning_x, binning_y = max(msg.binning_x, 1), max(msg.binning_y, 1)
    roi = msg.roi
    if roi.width and roi.height:
        x_offset, y_offset, width, height = roi.x_offset, roi.y_offset, roi.width, roi.height
    else:
        x_offset, y_offset, width, height = 0, 0, msg.width, msg.height
    # The sensor's K with the image's size: both checked in one go.
    sensor = CameraIntrinsics.from_camera_info(msg.k, width // binning_x, height // binning_y)
    return dataclasses.replace(sensor, fx=sensor.fx / binning_x, fy=sensor.fy / binning_y,
                               cx=(sensor.cx - x_offset) / binning_x, cy=(sensor.cy - y_offset) / binning_y)


def camera_info_message(header, intrinsics):
    """sensor_msgs/CameraInfo of a distortion-free pinhole camera."""
    fx, fy, cx, cy = intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy
    return CameraInfo(header=header, width=intrinsics.width, height=intrinsics.height, distortion_model="plumb_bob",
                      d=[0.0] * 5, k=intrinsics.k_matrix(), r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])
