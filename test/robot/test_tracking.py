"""The runtime tracker (no ROS, no torch): identities that persist, are never reused, and let go.

Driven by the synthetic video's ground truth boxes (exact identities known) and by hand-made
boxes for the corner cases.
"""

import numpy as np
import pytest

from detr_ros.errors import ConfigError
from detr_ros.runtime.box_motion import BoxKalman
from detr_ros.runtime.detections import Detections
from detr_ros.runtime.tracking import Tracker, TrackerSettings
from detr_ros.synthetic.video import SceneVideo

FRAME_NS = 100_000_000  # 10 Hz, the synthetic camera's default rate
HIGH = 0.4


def _frame(boxes, scores=None, class_ids=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.full(len(boxes), 0.9, np.float32) if scores is None else np.asarray(scores, np.float32)
    class_ids = np.zeros(len(boxes), np.int64) if class_ids is None else np.asarray(class_ids, np.int64)
    return Detections(boxes=boxes, scores=scores, class_ids=class_ids)


def _unexplained_id_changes(video, frames, settings):
    """(id changes of an object not preceded by a gap in its ground truth longer than the lost
    timeout, ids given to two objects, object-frames) over ``frames`` frames of the video."""
    tracker = Tracker(settings)
    last = {}  # truth id -> (frame index, tracker id)
    owners = {}  # tracker id -> truth id
    changes, shared, count = 0, 0, 0
    gap_frames = settings.lost_timeout_s * 1e9 / FRAME_NS
    for index in range(frames):
        annotations = video.frame(index)[1]
        _, ids = tracker.track(_frame([a.box for a in annotations], None, [a.class_index for a in annotations]),
                               index * FRAME_NS, HIGH)
        for annotation, track_id in zip(annotations, ids.tolist()):
            count += 1
            if not track_id:
                continue
            seen = last.get(annotation.track_id)
            if seen is not None and seen[1] != track_id and index - seen[0] <= gap_frames:
                changes += 1
            shared += owners.setdefault(track_id, annotation.track_id) != annotation.track_id
            last[annotation.track_id] = (index, track_id)
    return changes, shared, count


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_ground_truth_objects_keep_their_ids_through_crossings_and_traffic(seed):
    video = SceneVideo(320, 320, seed=seed, num_objects=6, traffic=True)
    changes, shared, count = _unexplained_id_changes(video, 200, TrackerSettings())
    # With exact boxes, an object changes id only after being out of sight longer than the lost
    # timeout; a crossing may cost one id swap (two objects' ids) in the clip, no more.
    assert changes <= 1 and shared <= 1, (changes, shared, count)


def test_a_new_object_gets_its_id_once_confirmed_and_ids_count_up_never_reused():
    tracker = Tracker(TrackerSettings(confirm_frames=2, lost_timeout_s=0.25))
    box = [10, 10, 50, 50]
    _, first = tracker.track(_frame([box]), 0, HIGH)
    _, second = tracker.track(_frame([box]), FRAME_NS, HIGH)
    assert first.tolist() == [0] and second.tolist() == [1]
    for step in range(2, 6):  # gone longer than lost_timeout_s: the track is dropped
        tracker.track(_frame([]), step * FRAME_NS, HIGH)
    tracker.track(_frame([box]), 6 * FRAME_NS, HIGH)
    _, again = tracker.track(_frame([box]), 7 * FRAME_NS, HIGH)
    assert again.tolist() == [2]


def test_an_object_missed_for_a_few_frames_keeps_its_id_along_its_predicted_path():
    tracker = Tracker()
    ids = []
    for step in range(12):
        x = 10 + 8 * step  # 80 px/s to the right
        visible = step not in (5, 6, 7)
        _, found = tracker.track(_frame([[x, 20, x + 30, 50]] if visible else []), step * FRAME_NS, HIGH)
        ids += found.tolist()
    assert set(ids[1:]) == {1}


def test_weak_detections_continue_tracks_but_start_none():
    tracker = Tracker()
    box = [100, 100, 140, 140]
    for step in range(3):
        tracker.track(_frame([box]), step * FRAME_NS, HIGH)
    published, ids = tracker.track(_frame([box, [200, 200, 240, 240]], [0.2, 0.2]), 3 * FRAME_NS, HIGH)
    assert ids.tolist() == [1] and published.boxes.tolist() == [box]


def test_a_track_only_weak_detections_continue_ends_after_the_lost_timeout():
    tracker = Tracker(TrackerSettings(lost_timeout_s=0.3))
    box = [100, 100, 140, 140]
    tracker.track(_frame([box]), 0, HIGH)
    ids = [tracker.track(_frame([box], [0.3]), step * FRAME_NS, HIGH)[1].tolist() for step in range(1, 6)]
    # Weak boxes keep the track until the first frame more than 0.3 s after its last strong one; then
    # nothing follows them.
    assert ids == [[1], [1], [1], [1], []] and tracker.confirmed_count == 0
    # A strong detection there starts a new track; weak ones then continue it again.
    assert tracker.track(_frame([box]), 6 * FRAME_NS, HIGH)[1].tolist() == [2]
    assert tracker.track(_frame([box], [0.3]), 7 * FRAME_NS, HIGH)[1].tolist() == [2]


def test_one_object_answered_as_two_classes_is_one_track():
    tracker = Tracker()
    for step in range(4):
        found, ids = tracker.track(_frame([[10, 10, 60, 60], [11, 10, 61, 60]], [0.9, 0.6], [0, 3]),
                                   step * FRAME_NS, HIGH)
    assert ids.tolist() == [1] and found.class_ids.tolist() == [0]


def test_a_box_filter_update_changes_the_measured_boxes_only():
    motion = BoxKalman()
    motion.add(np.array([[10, 10, 50, 50], [100, 100, 140, 160], [200, 20, 230, 90]], np.float64))
    motion.predict(0.1)
    before = [state.copy() for state in (motion.means, motion.velocities, motion.pp, motion.pv, motion.vv)]
    motion.update(np.array([1]), np.array([[104, 100, 144, 160]], np.float64))
    after = (motion.means, motion.velocities, motion.pp, motion.pv, motion.vv)
    for old, new in zip(before, after):
        assert np.array_equal(old[[0, 2]], new[[0, 2]]) and not np.array_equal(old[1], new[1])


@pytest.mark.parametrize("next_stamp_ns", [-FRAME_NS, 60 * 1_000_000_000], ids=["backwards", "long_pause"])
def test_time_jumps_drop_every_track(next_stamp_ns):
    tracker = Tracker(TrackerSettings(reset_gap_s=5.0))
    box = [10, 10, 50, 50]
    for step in range(3):
        tracker.track(_frame([box]), step * FRAME_NS, HIGH)
    assert tracker.confirmed_count == 1
    _, ids = tracker.track(_frame([box]), 2 * FRAME_NS + next_stamp_ns, HIGH)
    # The old track is gone: the same box starts a new one, with a new id.
    assert ids.tolist() == [2] and tracker.confirmed_count == 1


def test_settings_out_of_range_are_refused_by_name():
    with pytest.raises(ConfigError, match="match_iou"):
        TrackerSettings(match_iou=1.5)
    with pytest.raises(ConfigError, match="lost_timeout_s"):
        TrackerSettings(lost_timeout_s=0.0)
