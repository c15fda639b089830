"""Detections placed in 3D as ROS messages: vision_msgs/Detection3DArray and visualization_msgs/MarkerArray.

Built from plain arrays (runtime.depth.BoxesIn3D and the 2D detections), without a ROS context.
Positions are in the camera's optical frame, the header's frame_id (the depth image is aligned
to the colour image, so both share it).
"""

import numpy as np
from builtin_interfaces.msg import Duration
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose
from visualization_msgs.msg import Marker, MarkerArray

from detr_ros.ros.messages import class_label
from detr_ros.runtime.drawing import class_colour

# Markers live a little longer than a frame interval would need, so that rviz clears the boxes of a
# camera that stopped instead of showing them for ever.
MARKER_LIFETIME = Duration(sec=1)
_TEXT_HEIGHT_M = 0.12
_BOX_ALPHA = 0.45


class Detection3DArrayWriter:
    """Fills one Detection3DArray again and again, reusing its detections (as messages.DetectionArrayWriter
    does for 2D, and for the same reason: building a detection anew costs more than filling one)."""

    def __init__(self):
        self._message = Detection3DArray()
        self._detections = []

    def fill(self, header, placed, scores, class_ids, ids, class_names, class_id_format="index"):
        """The Detection3DArray of the detections with a valid 3D placement, valid until the next call.

        placed: BoxesIn3D for the n detections; scores [n]; class_ids [n] training-class indices;
        ids: [n] strings (track ids, or ranks). Each Detection3D carries the hypothesis (class, score,
        pose at the centre), the box (centre, size; axes of the optical frame) and the id.
        """
        rows = np.flatnonzero(placed.valid)
        while len(self._detections) < len(rows):
            detection = Detection3D()
            detection.bbox.center.orientation.w = 1.0
            detection.results.append(ObjectHypothesisWithPose())
            self._detections.append(detection)
        centres, sizes = placed.centres[rows].tolist(), placed.sizes[rows].tolist()
        for detection, row, (x, y, z), (width, height, depth) in zip(self._detections, rows.tolist(), centres, sizes):
            detection.header = header
            detection.id = ids[row]
            position = detection.bbox.center.position
            position.x, position.y, position.z = x, y, z
            detection.bbox.size.x, detection.bbox.size.y, detection.bbox.size.z = width, height, depth
            result = detection.results[0]
            result.hypothesis.class_id = class_label(int(class_ids[row]), class_names, class_id_format)
            result.hypothesis.score = float(scores[row])
            result.pose.pose = detection.bbox.center
        self._message.header = header
        self._message.detections = self._detections[: len(rows)]
        return self._message


def detection_3d_array(header, placed, scores, class_ids, ids, class_names, class_id_format="index"):
    """A new Detection3DArray (see Detection3DArrayWriter.fill)."""
    return Detection3DArrayWriter().fill(header, placed, scores, class_ids, ids, class_names, class_id_format)


class MarkerArrayWriter:
    """Fills one MarkerArray for rviz again and again, reusing its markers (as Detection3DArrayWriter does,
    and for the same reason): a translucent box per Detection3D and a label (class and id) above it, in
    ``namespace``. The first marker deletes the previous frame's, so only the current detections show."""

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

    def fill(self, header, detections_3d, class_ids, class_names):
        """The MarkerArray of a Detection3DArray (Detection3DArrayWriter.fill's), valid until the next call.

        class_ids: [k] training-class indices of its k detections, in order (colour and name)."""
        detections = detections_3d.detections
        while len(self._pairs) < len(detections):
            self._pairs.append(self._new_pair(len(self._pairs)))
        self._delete_all.header = header
        markers = [self._delete_all]
        for (box, label), detection, class_id in zip(self._pairs, detections, np.asarray(class_ids).tolist()):
            box.header = label.header = header
            box.pose = detection.bbox.center
            box.scale.x, box.scale.y = detection.bbox.size.x, detection.bbox.size.y
            box.scale.z = max(detection.bbox.size.z, 0.01)  # a flat object still shows
            box.color.r, box.color.g, box.color.b = (channel / 255.0 for channel in class_colour(class_id))
            name = class_label(class_id, class_names, "name")
            label.text = f"{name} #{detection.id}" if detection.id else name
            position = detection.bbox.center.position
            label.pose.position.x = position.x
            label.pose.position.y = position.y - detection.bbox.size.y / 2.0 - _TEXT_HEIGHT_M
            label.pose.position.z = position.z
            markers += [box, label]
        self._message.markers = markers
        return self._message
