"""The top view of tracked positions: each track drawn in its own colour where it is."""

import numpy as np

from detr_ros.runtime.drawing import class_colour
from detr_ros.runtime.top_down import draw_top_down


def _pixels_of(picture, track_id):
    red, green, blue = class_colour(track_id)
    return np.argwhere(np.all(picture == (blue, green, red), axis=2))  # rows, columns


def test_tracks_are_drawn_in_their_colours_left_right_near_and_far_as_they_are():
    picture = draw_top_down({"1": [(-1.0, 2.0), (-1.0, 3.0)], "2": [(1.0, 5.0), (1.5, 5.0)]}, size=400)
    left_near, right_far = _pixels_of(picture, 1), _pixels_of(picture, 2)
    assert len(left_near) and len(right_far)
    assert left_near[:, 1].mean() < 200 < right_far[:, 1].mean()  # x: left of the camera, right of it
    assert right_far[:, 0].mean() < left_near[:, 0].mean()  # z: farther is higher up
