"""A bird's-eye plot of tracked objects' 3D positions over time (numpy + OpenCV), for the demo and recordings.

The camera sits at the bottom centre looking up the picture: x (metres, right) runs across, z
(metres, forward, the optical axis) runs up. Each track is a line through its positions in time
order, in a colour of its own, ending in a dot labelled with its id.
"""

import cv2
import numpy as np

from detr_ros.runtime.drawing import class_colour

_MARGIN = 40
_GRID_STEPS_M = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


def draw_top_down(tracks, size=480):
    """BGR uint8 [size, size, 3] picture of ``tracks``: {track id (str): [(x, z), ...] metres in time order}."""
    canvas = np.full((size, size, 3), 255, np.uint8)
    points = np.array([p for path in tracks.values() for p in path], np.float64).reshape(-1, 2)
    far = max(float(points[:, 1].max()) if len(points) else 1.0, 1.0) * 1.1
    half_width = max(float(np.abs(points[:, 0]).max()) if len(points) else 0.5, far / 2.0) * 1.1
    scale = (size - 2 * _MARGIN) / max(2.0 * half_width, far)

    def pixel(x, z):
        return int(round(size / 2.0 + x * scale)), int(round(size - _MARGIN - z * scale))

    step = next((s for s in _GRID_STEPS_M if far / s <= 8), _GRID_STEPS_M[-1])
    for z in np.arange(step, far, step):
        y = pixel(0.0, z)[1]
        cv2.line(canvas, (_MARGIN // 2, y), (size - _MARGIN // 2, y), (225, 225, 225), 1)
        cv2.putText(canvas, f"{z:g} m", (4, y - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (120, 120, 120), 1, cv2.LINE_AA)
    cv2.circle(canvas, pixel(0.0, 0.0), 5, (0, 0, 0), -1)  # the camera
    for track_id, path in tracks.items():
        colour = class_colour(int(track_id)) if track_id.isdigit() else (90, 90, 90)
        colour = (colour[2], colour[1], colour[0])  # class_colour gives RGB
        pixels = np.array([pixel(x, z) for x, z in path], np.int32)
        cv2.polylines(canvas, [pixels.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA)
        cv2.circle(canvas, tuple(pixels[-1].tolist()), 4, colour, -1)
        cv2.putText(canvas, f"#{track_id}", (int(pixels[-1][0]) + 5, int(pixels[-1][1]) - 5),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    cv2.putText(canvas, "top view: x right, z forward (m)", (_MARGIN // 2, size - 10), cv2.FONT_HERSHEY_SIMPLEX,
                0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
