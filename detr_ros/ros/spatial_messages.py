"""Detections placed in 3D as ROS messages: vision_msgs/Detection3DArray and visualization_msgs/MarkerArray.

Built from plain arrays (runtime.depth.BoxesIn3D and the 2D detections), without a ROS context; the
Detection3DArray serialised (detection_cdr), the MarkerArray, only built while rviz listens, as a message.
Positions are in the camera's optical frame, the header's frame_id (the depth image is aligned
to the colour image, so both share it).
"""

import numpy as np
from builtin_interfaces.msg import Duration
from visualization_msgs.msg import Marker, MarkerArray

from detr_ros.ros import detection_cdr
from detr_ros.ros.messages import class_label
from detr_ros.runtime.drawing import class_colour

# Markers live a little longer than a frame interval would need, so that rviz clears the boxes of a
# camera that stopped instead of showing them for ever.
MARKER_LIFETIME = Duration(sec=1)
_TEXT_HEIGHT_M = 0.12
_BOX_ALPHA = 0.45


def serialized_detection_3d_array(header, placed, scores, labels, ids):
    """The vision_msgs/Detection3DArray of the detections with a valid 3D placement, serialised
    (detection_cdr.detection_3d_array).

    placed: BoxesIn3D for the n detections; scores [n]; labels: [n] ObjectHypothesis.class_id strings
    (messages.class_labels); ids: [n] strings (track ids, or empty). Each Detection3D carries the
    hypothesis (class, score, pose at the centre), the box (centre, size; axes of the optical frame)
    and the id.
    """
    rows = np.flatnonzero(placed.valid).tolist()
    return detection_cdr.detection_3d_array(header, placed.centres[rows], placed.sizes[rows], np.asarray(scores)[rows],
                                            [labels[row] for row in rows], [ids[row] for row in rows])


class MarkerArrayWriter:
    """Fills one MarkerArray for rviz again and again, reusing its markers (a marker built anew costs more
    than one filled): a translucent box per detection placed in 3D and a label (class and id) above it,
    in ``namespace``. The first marker deletes the previous frame's, so only the current detections show."""

    def __init__(self, namespace):
        self._namespace = namespace
        self._delete_all = Marker(ns=namespace, action=Marker.DELETEALL)
        self._pairs = []  # (box, label) markers of the detection at that index
        self._message = MarkerArray()

    def _new_pair(self, index):
        box = Marker(ns=self._namespace, id=2 * index, type=Marker.CUBE, action=Marker.ADD, lifetime=MARKER_LIFETIME)
        box.color.a = _BOX_ALPHA
        label = Marker(ns=self._namespace, id=2 * index + 1, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                       lifetime=MARKER_LIFETIME)
        label.pose.orientation.w = 1.0
        label.scale.z = _TEXT_HEIGHT_M
        label.color.r = label.color.g = label.color.b = label.color.a = 1.0
        return box, label

    def fill(self, header, placed, class_ids, ids, class_names):
        """The MarkerArray of the detections with a valid 3D placement, valid until the next call.

        placed: BoxesIn3D of n detections; class_ids: [n] training-class indices (colour and name);
        ids: [n] strings (track ids, or empty)."""
        rows = np.flatnonzero(placed.valid)
        while len(self._pairs) < len(rows):
            self._pairs.append(self._new_pair(len(self._pairs)))
        self._delete_all.header = header
        markers = [self._delete_all]
        centres, sizes = placed.centres[rows].tolist(), placed.sizes[rows].tolist()
        for (box, label), (x, y, z), (width, height, depth), class_id, track_id in zip(
                self._pairs, centres, sizes, np.asarray(class_ids)[rows].tolist(), [ids[row] for row in rows.tolist()]):
            box.header = label.header = header
            box.pose.position.x, box.pose.position.y, box.pose.position.z = x, y, z
            box.scale.x, box.scale.y = width, height
            box.scale.z = max(depth, 0.01)  # a flat object still shows
            box.color.r, box.color.g, box.color.b = (channel / 255.0 for channel in class_colour(class_id))
            name = class_label(class_id, class_names, "name")
            label.text = f"{name} #{track_id}" if track_id else name
            label.pose.position.x, label.pose.position.z = x, z
            label.pose.position.y = y - height / 2.0 - _TEXT_HEIGHT_M
            markers += [box, label]
        self._message.markers = markers
        return self._message
