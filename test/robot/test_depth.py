"""3D from depth in the runtime (no ROS): encodings, back-projection, and centres against the synthetic
video's ground truth."""

import numpy as np
import pytest

from detr_ros.errors import ConfigError
from detr_ros.runtime.depth import CameraIntrinsics, DepthSettings, TrackPlacer, depth_in_metres, locate_boxes
from detr_ros.synthetic.video import SceneVideo

# Exact boxes on the exact depth image leave only float32 rounding (relative 6e-8) of the depths.
ROUNDING = 1e-6


def test_millimetre_and_metre_depth_images_agree_and_mark_missing_readings():
    millimetres = np.array([[0, 1500], [2000, 65535]], np.uint16)
    metres = np.array([[np.nan, 1.5], [2.0, np.inf]], np.float32)
    from_mm, from_m = depth_in_metres(millimetres, "16UC1"), depth_in_metres(metres, "32FC1")
    assert np.isnan(from_mm[0, 0]) and np.isnan(from_m[0, 0]) and np.isnan(from_m[1, 1])
    assert from_mm[0, 1] == pytest.approx(1.5) and from_mm[1, 0] == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="16UC1"):
        depth_in_metres(metres, "mono16")


def test_a_box_on_a_plane_is_placed_at_the_plane_through_its_centre():
    intrinsics = CameraIntrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    depth = np.full((480, 640), 4.0, np.float32)
    depth[200:280, 400:480] = 2.0  # a 80 px square object 2 m away, on a wall at 4 m
    found = locate_boxes(depth, [[400, 200, 480, 280]], intrinsics)
    assert found.valid.tolist() == [True]
    # Its centre pixel (439.5, 239.5) is 120 px right of the principal point: x = 120 * 2 / 500.
    assert found.centres[0] == pytest.approx([0.48, 0.0, 2.0])
    assert found.sizes[0] == pytest.approx([0.32, 0.32, 0.0])


def test_boxes_without_readings_are_marked_invalid_and_a_ring_is_found_through_its_hole():
    intrinsics = CameraIntrinsics(300.0, 300.0, 99.5, 99.5, 200, 200)
    depth = np.full((200, 200), 6.0, np.float32)
    ys, xs = np.mgrid[0:200, 0:200]
    radius = np.hypot(xs - 100, ys - 100)
    depth[(radius < 40) & (radius > 22)] = 3.0  # a ring: its box's middle shows the wall
    depth[0:20, 0:20] = np.nan
    found = locate_boxes(depth, [[60, 60, 140, 140], [0, 0, 20, 20]], intrinsics)
    assert found.valid.tolist() == [True, False]
    assert found.centres[0, 2] == pytest.approx(3.0)
    assert np.isnan(found.centres[1]).all()


def test_an_object_partly_hidden_by_a_nearer_one_is_placed_at_its_own_distance():
    intrinsics = CameraIntrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    depth = np.full((480, 640), 8.0, np.float32)
    depth[100:300, 100:300] = 5.0  # a square 5 m away...
    depth[150:400, 180:260] = 2.0  # ...behind a post 2 m away covering its middle, the post's box alone
    found = locate_boxes(depth, [[100, 100, 300, 300], [180, 150, 260, 400]], intrinsics)
    assert found.centres[:, 2] == pytest.approx([5.0, 2.0])


def test_a_track_whose_box_takes_in_a_nearer_object_stays_at_its_own_distance():
    intrinsics = CameraIntrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    alone = np.full((480, 640), 8.0, np.float32)
    alone[100:300, 100:300] = 5.0  # a square 5 m away
    passing = alone.copy()
    passing[180:300, 160:300] = 3.0  # a nearer object, not detected on its own, inside the square's box
    box = [[100, 100, 300, 300]]
    placer = TrackPlacer()
    assert placer.locate(alone, box, ["7"], intrinsics).centres[0, 2] == pytest.approx(5.0)
    assert placer.locate(passing, box, ["7"], intrinsics).centres[0, 2] == pytest.approx(5.0)
    # Without a track to go by, the nearest surface is taken.
    assert placer.locate(passing, box, [""], intrinsics).centres[0, 2] == pytest.approx(3.0)
    assert locate_boxes(passing, box, intrinsics).centres[0, 2] == pytest.approx(3.0)


def test_millimetre_depth_is_read_where_sampled_as_metres_are():
    intrinsics = CameraIntrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    millimetres = np.full((480, 640), 4000, np.uint16)
    millimetres[200:280, 400:480] = 2000
    millimetres[200:240, 400:480] = 0  # half the object without readings
    boxes = [[400, 200, 480, 280], [0, 0, 50, 50]]
    from_mm = locate_boxes(millimetres, boxes, intrinsics, encoding="16UC1")
    from_m = locate_boxes(depth_in_metres(millimetres, "16UC1"), boxes, intrinsics)
    assert from_mm.centres == pytest.approx(from_m.centres) and from_mm.centres[:, 2] == pytest.approx([2.0, 4.0])


def test_boxes_of_a_colour_image_larger_than_the_depth_image_are_scaled_to_it():
    intrinsics = CameraIntrinsics(250.0, 250.0, 159.5, 119.5, 320, 240)
    depth = np.full((240, 320), 5.0, np.float32)
    depth[100:140, 140:180] = 2.5
    found = locate_boxes(depth, [[280, 200, 360, 280]], intrinsics, image_size=(640, 480))
    assert found.centres[0] == pytest.approx([0.0, 0.0, 2.5])


@pytest.mark.parametrize("seed", [3, 4])
def test_centres_of_ground_truth_boxes_match_the_synthetic_positions(seed):
    video = SceneVideo(320, 240, seed=seed, num_objects=6, traffic=True)
    errors = []
    for index in range(0, 120, 6):
        frame = video.render(index)
        inside = [a for a in frame.annotations if a.visible_fraction > 0.99]
        found = locate_boxes(frame.depth_m, [a.box for a in inside], video.intrinsics, DepthSettings())
        for annotation, centre in zip(inside, found.centres):
            truth = np.array(annotation.position)
            errors.append(np.linalg.norm(centre - truth) / truth[2])
    assert len(errors) >= 20
    assert max(errors) <= ROUNDING


def test_partly_hidden_objects_of_the_demo_scene_keep_their_own_distances():
    # The demo's bouncing objects pass in front of each other; every box of the frame is given, as the
    # node gives all its detections, and each object at least half in sight is placed at its distance.
    video = SceneVideo(640, 480, seed=2024)
    errors, hidden = [], 0
    for index in range(0, 120, 3):
        frame = video.render(index)
        seen = [a for a in frame.annotations if a.visible_fraction >= 0.5]
        found = locate_boxes(frame.depth_m, [a.box for a in frame.annotations], video.intrinsics)
        distances = {id(a): z for a, z in zip(frame.annotations, found.centres[:, 2])}
        errors += [abs(distances[id(a)] - a.position[2]) / a.position[2] for a in seen]
        hidden += sum(a.visible_fraction < 0.99 for a in seen)
    assert hidden >= 10  # occlusions do happen in the clip
    assert max(errors) <= ROUNDING
