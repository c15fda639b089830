"""Detection arrays, and rviz markers of detections, serialised straight from arrays to the CDR bytes a ROS
publisher sends.

rclpy turns a message object into its C form field by field, checking every nested message's type
by name, and a detection nests a dozen messages: at tens of objects a frame, that conversion takes
longer than tracking them. A publisher also takes a message already serialised
(``Publisher.publish(bytes)``, in every ROS 2 since Foxy), and a detection's CDR is a few strings
and a run of doubles, which these functions write directly; so is an rviz marker.

The bytes are plain CDR, little-endian, with its 4-byte encapsulation header (XCDR1: each value
aligned to its size from the start of the data), the representation Fast DDS uses for these types,
of vision_msgs 4 and visualization_msgs 3 or newer (ROS 2 Humble onward). ``check_encoding``
compares them with the middleware's own serialisation once, when a node starts, so that any other
layout or representation stops it with a clear error instead of sending what subscribers cannot read.
"""

import struct

import numpy as np

from detr_ros.errors import ConfigError

_ENCAPSULATION = b"\x00\x01\x00\x00"  # CDR, little-endian
_UINT32 = struct.Struct("<I")
_STAMP = struct.Struct("<iI")
_ONE = _UINT32.pack(1)  # results: one hypothesis
_ZERO_PADDING = bytes(8)
# What follows a detection's class: the hypothesis's score, its pose (position, orientation x, y, z, w) and the
# pose's 36 covariances, all zero; then the box. A pose's orientation is the identity: three zeros, then w = 1.
# 2D: score, w; the box's centre x, y, theta and size x, y.
_SCORE_AND_BOX_2D = struct.Struct("<d48xd288x5d")
# 3D: score, position x, y, z, w; the box's centre (position x, y, z, w) and size x, y, z.
_SCORE_AND_BOX_3D = struct.Struct("<d3d24xd288x3d24xd3d")
_MARKER_KIND = struct.Struct("<3i")  # id, type, action
# Position, identity orientation, scale, colour (RGBA) and lifetime (seconds, nanoseconds).
_MARKER_SHAPE = struct.Struct("<3d4d3d4fiI")
_IDENTITY_ORIENTATION = (0.0, 0.0, 0.0, 1.0)
_ADD, _DELETEALL = 0, 3  # visualization_msgs/Marker actions


def _string(text):
    """A CDR string: its length with the terminating NUL, then its UTF-8 bytes and the NUL."""
    encoded = text.encode() + b"\x00"
    return _UINT32.pack(len(encoded)) + encoded


def _align(data, size):
    """Pad the CDR buffer ``data`` (bytearray, from the encapsulation header on) to a multiple of ``size``."""
    data += _ZERO_PADDING[: (len(_ENCAPSULATION) - len(data)) % size]


def _header(header):
    """A std_msgs/Header's CDR bytes from a 4-aligned position, padded to end 4-aligned (every field after a
    header in these messages is aligned to 4 at least)."""
    head = _STAMP.pack(header.stamp.sec, header.stamp.nanosec) + _string(header.frame_id)
    return head + _ZERO_PADDING[:-len(head) % 4]


def _start(header, count):
    """A CDR buffer holding an array's header and its detection count; and the bytes each detection starts
    with, from a 4-aligned position: the header again and its count of hypotheses (one)."""
    head = _header(header)
    return bytearray(_ENCAPSULATION) + head + _UINT32.pack(count), head + _ONE


def _hypothesis(data, detection_start, label):
    """A detection's start (_start) and its one hypothesis's class, ending 8-aligned, where its score starts."""
    _align(data, 4)
    data += detection_start + _string(label)
    _align(data, 8)


def detection_2d_array(header, boxes, scores, labels, ids=None):
    """A vision_msgs/Detection2DArray as CDR bytes.

    header: std_msgs/Header for the array and every detection (the published stamp and frame_id);
    boxes: [n, 4] xyxy pixels; scores: [n]; labels: [n] strings for ObjectHypothesis.class_id
    (messages.class_labels); ids: [n] strings for Detection2D.id (track ids), or None: empty, as
    vision_msgs asks of detections that no tracker has identified. Each detection has a centre/size
    box and one hypothesis, whose pose is the identity with zero covariance.
    rclpy.serialization.deserialize_message reads the bytes back.
    """
    data, detection_start = _start(header, len(labels))
    ids = [""] * len(labels) if ids is None else ids
    for (x0, y0, x1, y1), score, label, track_id in zip(boxes.tolist(), scores.tolist(), labels, ids):
        _hypothesis(data, detection_start, label)
        # The doubles end 8-aligned, so the id string needs no padding.
        data += _SCORE_AND_BOX_2D.pack(score, 1.0, (x0 + x1) / 2.0, (y0 + y1) / 2.0, 0.0, x1 - x0, y1 - y0)
        data += _string(track_id)
    return bytes(data)


def detection_3d_array(header, centres, sizes, scores, labels, ids):
    """A vision_msgs/Detection3DArray as CDR bytes.

    centres, sizes: [n, 3] metres in the header's frame; scores: [n]; labels, ids: [n] strings (as in
    detection_2d_array; ids required). Each detection's box is axis-aligned (identity orientation)
    about its centre, and its one hypothesis has the box's centre as its pose.
    """
    data, detection_start = _start(header, len(labels))
    for (x, y, z), (size_x, size_y, size_z), score, label, track_id in zip(centres.tolist(), sizes.tolist(),
                                                                           scores.tolist(), labels, ids):
        _hypothesis(data, detection_start, label)
        data += _SCORE_AND_BOX_3D.pack(score, x, y, z, 1.0, x, y, z, 1.0, size_x, size_y, size_z)
        data += _string(track_id)
    return bytes(data)


def _empty_fields(*kinds):
    """The CDR bytes of a run of empty fields (False, 0, "", a zero stamp) of these kinds ("bool", "uint32",
    "string", "stamp"), from an 8-aligned position, each aligned as CDR asks."""
    values = {"uint32": _UINT32.pack(0), "string": _string(""), "stamp": _STAMP.pack(0, 0)}
    data = bytearray(_ENCAPSULATION)  # the data's start: 8-aligned
    for kind in kinds:
        if kind == "bool":
            data.append(0)
        else:
            _align(data, 4)
            data += values[kind]
    return bytes(data[len(_ENCAPSULATION):])


# Fields a marker of ours leaves empty. Between its lifetime and its text: not frame-locked, no points,
# colours, texture (resource, image with an empty header, format and data) or texture coordinates; it
# starts 8-aligned, after the lifetime. After the text: no mesh (resource, file name, data), whose
# paddings are the same wherever the text ends, as it ends 4-aligned once padded.
_MARKER_UNUSED_BEFORE_TEXT = _empty_fields("bool", "uint32", "uint32", "string", "stamp", "string", "string", "uint32",
                                           "uint32")
_MARKER_UNUSED_AFTER_TEXT = _empty_fields("string", "string", "uint32", "bool")


def _marker(data, head, ns, marker_id, kind, action, position, scale, colour, lifetime, text):
    """One visualization_msgs/Marker appended to the CDR buffer ``data``: header bytes ``head``, namespace
    string ``ns``, lifetime (seconds, nanoseconds), the identity orientation, and none of the fields our
    markers leave empty."""
    _align(data, 4)
    data += head + ns
    _align(data, 4)
    data += _MARKER_KIND.pack(marker_id, kind, action)
    _align(data, 8)
    data += _MARKER_SHAPE.pack(*position, *_IDENTITY_ORIENTATION, *scale, *colour, *lifetime)
    data += _MARKER_UNUSED_BEFORE_TEXT
    _align(data, 4)
    data += _string(text)
    _align(data, 4)
    data += _MARKER_UNUSED_AFTER_TEXT


def marker_array(header, namespace, markers, lifetime_s):
    """A visualization_msgs/MarkerArray as CDR bytes: first a DELETEALL marker of ``namespace``, then ``markers``.

    header: std_msgs/Header of every marker; markers: (id, type, position (x, y, z), scale (x, y, z),
    colour (r, g, b, a), text) each, an ADD of that type in ``namespace`` that lives ``lifetime_s``
    seconds, with the identity orientation and nothing else (no points, colours, texture or mesh).
    """
    data = bytearray(_ENCAPSULATION) + _UINT32.pack(len(markers) + 1)
    head, ns = _header(header), _string(namespace)
    lifetime = (int(lifetime_s), round(lifetime_s % 1.0 * 1e9))
    _marker(data, head, ns, 0, 0, _DELETEALL, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), (0, 0), "")
    for marker_id, kind, position, scale, colour, text in markers:
        _marker(data, head, ns, marker_id, kind, _ADD, position, scale, colour, lifetime, text)
    return bytes(data)


def check_encoding():
    """Raise ConfigError unless the middleware in use reads sample arrays of these bytes as they were meant
    and serialises them to as many bytes (its padding bytes are not always zero, so they are not compared)."""
    from builtin_interfaces.msg import Duration
    from geometry_msgs.msg import Point, Pose, PoseWithCovariance, Vector3
    from rclpy.serialization import deserialize_message, serialize_message
    from std_msgs.msg import ColorRGBA, Header
    from vision_msgs.msg import (BoundingBox2D, BoundingBox3D, Detection2D, Detection2DArray, Detection3D,
                                 Detection3DArray, ObjectHypothesis, ObjectHypothesisWithPose)
    from visualization_msgs.msg import Marker, MarkerArray

    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec, header.stamp.nanosec = 1, 2
    box_2d = BoundingBox2D(size_x=29.0, size_y=38.5)
    box_2d.center.position.x, box_2d.center.position.y = 15.5, 21.25
    centre = Pose(position=Point(x=0.1, y=-0.2, z=3.0))
    samples = [
        (detection_2d_array(header, np.array([[1.0, 2.0, 30.0, 40.5]]), np.array([0.5]), ["3"], ["7"]),
         Detection2DArray(header=header, detections=[Detection2D(
             header=header, bbox=box_2d, id="7",
             results=[ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id="3", score=0.5))])])),
        (detection_3d_array(header, np.array([[0.1, -0.2, 3.0]]), np.array([[0.5, 0.25, 0.1]]), np.array([0.75]),
                            ["person"], ["12"]),
         Detection3DArray(header=header, detections=[Detection3D(
             header=header, bbox=BoundingBox3D(center=centre, size=Vector3(x=0.5, y=0.25, z=0.1)), id="12",
             results=[ObjectHypothesisWithPose(hypothesis=ObjectHypothesis(class_id="person", score=0.75),
                                               pose=PoseWithCovariance(pose=centre))])])),
        (marker_array(header, "cam/image", [(0, Marker.CUBE, (0.1, -0.2, 3.0), (0.5, 0.25, 0.1), (1.0, 0.5, 0.25, 0.5),
                                             ""),
                                            (1, Marker.TEXT_VIEW_FACING, (0.1, -0.5, 3.0), (0.0, 0.0, 0.12),
                                             (1.0, 1.0, 1.0, 1.0), "ring #12")], 1.5),
         MarkerArray(markers=[Marker(header=header, ns="cam/image", action=Marker.DELETEALL)] + [
             Marker(header=header, ns="cam/image", id=marker_id, type=kind, action=Marker.ADD,
                    pose=Pose(position=position), scale=scale, color=colour,
                    lifetime=Duration(sec=1, nanosec=500_000_000), text=text)
             for marker_id, kind, position, scale, colour, text in [
                 (0, Marker.CUBE, centre.position, Vector3(x=0.5, y=0.25, z=0.1),
                  ColorRGBA(r=1.0, g=0.5, b=0.25, a=0.5), ""),
                 (1, Marker.TEXT_VIEW_FACING, Point(x=0.1, y=-0.5, z=3.0), Vector3(z=0.12),
                  ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0), "ring #12")]])),
    ]
    for data, expected in samples:
        try:
            read = deserialize_message(data, type(expected))
        except Exception:  # another layout: the middleware could not read the bytes at all
            read = None
        if read != expected or len(serialize_message(expected)) != len(data):
            raise ConfigError(f"this ROS middleware serialises {type(expected).__name__} otherwise than the CDR "
                              "detr_ros writes (vision_msgs 4, visualization_msgs 3 or newer, plain CDR "
                              "little-endian); use ROS 2 Humble or newer with rmw_fastrtps_cpp, the middleware "
                              "detr_ros is tested with")
