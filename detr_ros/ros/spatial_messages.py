"""Detections placed in 3D as ROS messages: vision_msgs/Detection3DArray and visualization_msgs/MarkerArray.

Built from plain arrays (runtime.depth.BoxesIn3D and the 2D detections), without a ROS context, and
serialised (detection_cdr); the MarkerArray only while rviz (or anyone) listens.
Positions are in the camera's optical frame, the header's frame_id (the depth image is aligned
to the colour image, so both share it).
"""

import numpy as np
from visualization_msgs.msg import Marker

from detr_ros.ros import detection_cdr
from detr_ros.ros.messages import class_label
from detr_ros.runtime.drawing import class_colour

# Markers live a little longer than a frame interval would need, so that rviz clears the boxes of a
# camera that stopped instead of showing them for ever.
MARKER_LIFETIME_S = 1.0
_TEXT_HEIGHT_M = 0.12
_BOX_ALPHA = 0.45
_WHITE = (1.0, 1.0, 1.0, 1.0)


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


def serialized_marker_array(header, namespace, placed, class_ids, ids, class_names):
    """The visualization_msgs/MarkerArray of the detections with a valid 3D placement, serialised
    (detection_cdr.marker_array): a translucent box per detection and a label (class and id) above it,
    in ``namespace``. The first marker deletes the previous frame's, so only the current detections show.

    placed: BoxesIn3D of n detections; class_ids: [n] training-class indices (colour and name);
    ids: [n] strings (track ids, or empty)."""
    rows = np.flatnonzero(placed.valid)
    markers = []
    for index, ((x, y, z), (width, height, depth), class_id, track_id) in enumerate(zip(
            placed.centres[rows].tolist(), placed.sizes[rows].tolist(), np.asarray(class_ids)[rows].tolist(),
            [ids[row] for row in rows.tolist()])):
        colour = tuple(channel / 255.0 for channel in class_colour(class_id)) + (_BOX_ALPHA,)
        name = class_label(class_id, class_names, "name")
        text = f"{name} #{track_id}" if track_id else name
        # A flat object still shows.
        markers.append((2 * index, Marker.CUBE, (x, y, z), (width, height, max(depth, 0.01)), colour, ""))
        markers.append((2 * index + 1, Marker.TEXT_VIEW_FACING, (x, y - height / 2.0 - _TEXT_HEIGHT_M, z),
                        (0.0, 0.0, _TEXT_HEIGHT_M), _WHITE, text))
    return detection_cdr.marker_array(header, namespace, markers, MARKER_LIFETIME_S)
