"""Persistent object identities across one camera's frames: ByteTrack's association (numpy + scipy).

Each frame, every track's box is predicted to the frame's stamp (box_motion.BoxKalman) and matched
to the detections by IoU, one to one (scipy's linear_sum_assignment), in ByteTrack's stages:

1. detections scoring at least ``high_score`` (the published threshold) against the confirmed
   tracks, those seen last frame and those lost for a while;
2. the weaker detections (``low_score`` up to ``high_score``) against the confirmed tracks still
   unmatched that were seen last frame: an object half hidden or blurred keeps its track;
3. the strong detections left against the tentative tracks (born last frame, not yet confirmed).

Before that, of detections overlapping by more than ``same_object_iou`` whatever their classes, only
the best counts: the model sometimes answers one object twice, once per class it hesitates between,
and two tracks on one object would be an identity error. Strong detections left over that score
``birth_margin`` above the threshold start tentative tracks; a track becomes confirmed, and gets its
id, after ``confirm_frames`` frames in a row. Ids count up from 1 per tracker and are never reused. A
confirmed track without a strong detection for ``lost_timeout_s`` is dropped: weak ones bridge a
dip (an object half hidden), but a box that never again scores the threshold is not followed for
long, as the model's chance boxes on the background would be. So is every track when the stamps
jump backwards (a replayed recording) or pause longer than ``reset_gap_s``. A track keeps the class
of its latest detection; matching prefers pairs that keep their class (CLASS_CHANGE_COST), so objects
of different classes crossing each other keep their ids.
"""

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from detr_ros.errors import ConfigError
from detr_ros.runtime.box_motion import BoxKalman
from detr_ros.runtime.detections import (Detections, check_fraction, check_positive_integer, iou_matrix,
                                         without_duplicates)

# A track may change class (the model hesitates between two on one object), but where two objects
# cross, the pairing that keeps classes wins unless its boxes fit worse by more than this in IoU.
CLASS_CHANGE_COST = 0.5
# Assignment cost of a pair that must not be matched: above any allowed one.
_FORBIDDEN = 3.0


@dataclass(frozen=True)
class TrackerSettings:
    """How a Tracker associates and when it lets go.

    ByteTrack's defaults where it has them, but for those chosen on synthetic tuning videos (seeds no
    benchmark uses): weak detections from 0.2 rather than 0.1, as the weakest ones kept tracks going
    on nothing after their object left; a birth margin of 0.15 rather than 0.1, as the model's
    chance boxes score up to about half; a track confirmed on its first frame, as the birth margin
    keeps chance boxes out, while waiting for a second frame left every object's first one without
    an id; and second answers for one object dropped from 0.4 IoU, as the model's ones overlap their
    first by as little as that, and each such answer grew a second track that later took the
    object's id.

    low_score: weakest detection that may continue a track (stage 2);
    match_iou: least IoU of a strong detection with a track's predicted box (stage 1; ByteTrack 0.2);
    low_match_iou: the same for weak detections (stage 2; ByteTrack 0.5), stricter as they are less sure;
    tentative_match_iou: the same for tentative tracks (stage 3; ByteTrack 0.3);
    same_object_iou: detections overlapping a better one more than this, of any class, are dropped;
    birth_margin: a new track needs a score this far above the published threshold (ByteTrack 0.1);
    confirm_frames: consecutive frames before a track is confirmed and gets its id;
    lost_timeout_s: how long a confirmed track survives without a strong detection (ByteTrack's 30
    frames at 30 Hz, there unseen);
    reset_gap_s: a pause between frames longer than this drops every track.
    """

    low_score: float = 0.2
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    tentative_match_iou: float = 0.3
    same_object_iou: float = 0.4
    birth_margin: float = 0.15
    confirm_frames: int = 1
    lost_timeout_s: float = 1.0
    reset_gap_s: float = 5.0

    def __post_init__(self):
        for name in ("low_score", "match_iou", "low_match_iou", "tentative_match_iou", "same_object_iou", "birth_margin"):
            check_fraction(name, getattr(self, name))
        check_positive_integer("confirm_frames", self.confirm_frames)
        for name in ("lost_timeout_s", "reset_gap_s"):
            if not getattr(self, name) > 0.0:
                raise ConfigError(f"{name}={getattr(self, name)!r}, expected a positive number of seconds")

    def detection_threshold(self, score_threshold):
        """The score a detector feeding this tracker runs down to, for ``score_threshold`` published."""
        return min(score_threshold, self.low_score)


@dataclass
class FrameTracks:
    """A tracker's answer for one frame's detections (same order as given).

    published: [n] bool, the detections to report: every strong one but second answers for one
    object, and the weak ones that continue a confirmed track; track_ids: [n] int64, the confirmed
    track's id, 0 where none.
    """

    published: np.ndarray
    track_ids: np.ndarray


def match(track_boxes, track_classes, boxes, class_ids, min_iou):
    """One-to-one pairs (track rows [k], detection rows [k]) with IoU >= min_iou, of least total cost:
    1 - IoU, plus CLASS_CHANGE_COST where the classes differ."""
    iou = iou_matrix(track_boxes, boxes)
    allowed = iou >= min_iou
    changed = np.asarray(track_classes)[:, None] != np.asarray(class_ids)[None, :]
    # The assignment pairs every row or column; its forbidden pairs are dropped (all of them where none is allowed).
    rows, cols = linear_sum_assignment(np.where(allowed, 1.0 - iou + CLASS_CHANGE_COST * changed, _FORBIDDEN))
    ok = allowed[rows, cols]
    return rows[ok], cols[ok]


class Tracker:
    """ByteTrack-style tracking of one camera's detections; ``update`` once per frame, in stamp order.

    A track is tentative while its id is 0; a confirmed one is lost while its latest frame matched
    no detection (a tentative one unmatched is dropped).
    """

    def __init__(self, settings=None):
        self.settings = settings or TrackerSettings()
        self._next_id = 1
        self._last_stamp_ns = None
        self._reset()

    def _reset(self):
        self._motion = BoxKalman()
        self._ids = np.zeros(0, np.int64)  # 0 while tentative
        self._lost = np.zeros(0, bool)  # the latest frame matched no detection
        self._hits = np.zeros(0, np.int64)  # frames matched in a row, counted while tentative
        self._classes = np.zeros(0, np.int64)
        self._last_strong_ns = np.zeros(0, np.int64)  # stamp of each track's last strong detection

    @property
    def confirmed_count(self):
        """Confirmed tracks held now (seen or briefly lost)."""
        return int(np.count_nonzero(self._ids))

    def update(self, boxes, scores, class_ids, stamp_ns, high_score):
        """Associate one frame's detections with the tracks and advance them to ``stamp_ns``.

        boxes: [n, 4] xyxy pixels; scores: [n]; class_ids: [n] ints; stamp_ns: the frame's time
        in nanoseconds; high_score: the threshold of a strong (published) detection. Detections
        below ``settings.low_score`` are ignored. Returns FrameTracks.
        """
        settings = self.settings
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        class_ids = np.asarray(class_ids, np.int64).reshape(-1)
        self._advance_clock(int(stamp_ns))

        order = (-scores).argsort(kind="stable")
        candidates = np.zeros(len(scores), bool)
        candidates[order[without_duplicates(boxes[order], None, settings.same_object_iou)]] = True
        candidates &= scores >= settings.low_score
        published = candidates & (scores >= high_score)  # the strong ones, and below the weak ones matched
        strong = published.nonzero()[0]
        strong_unmatched = published.copy()
        predicted = self._motion.boxes()
        tracks_matched = np.zeros(len(self._ids), bool)
        matched = []  # (track rows, detection rows) of each stage

        def associate(track_rows, detection_rows, min_iou):
            """Match the rows and mark the pairs matched; returns them (track rows [k], detection rows [k])."""
            rows, cols = match(predicted[track_rows], self._classes[track_rows], boxes[detection_rows],
                               class_ids[detection_rows], min_iou)
            pairs = track_rows[rows], detection_rows[cols]
            tracks_matched[pairs[0]] = True
            strong_unmatched[pairs[1]] = False
            matched.append(pairs)
            return pairs

        confirmed = self._ids.nonzero()[0]
        tentative_count = len(self._ids) - len(confirmed)
        confirmed_matched = ()
        if len(confirmed) and len(strong):  # stage 1
            confirmed_matched, _ = associate(confirmed, strong, settings.match_iou)
            self._last_strong_ns[confirmed_matched] = stamp_ns
        if len(confirmed_matched) < len(confirmed):  # stage 2; published holds the strong candidates only so far
            weak = (candidates ^ published).nonzero()[0]
            seen_last = (~(tracks_matched | self._lost) & (self._ids != 0)).nonzero()[0] if len(weak) else ()
            if len(seen_last):
                published[associate(seen_last, weak, settings.low_match_iou)[1]] = True
        strong_left = strong_unmatched.nonzero()[0] if tentative_count else ()
        if len(strong_left):  # stage 3
            tentative, _ = associate((self._ids == 0).nonzero()[0], strong_left, settings.tentative_match_iou)
            self._last_strong_ns[tentative] = stamp_ns
            self._hits[tentative] += 1
            newly_confirmed = tentative[self._hits[tentative] >= settings.confirm_frames]
            self._ids[newly_confirmed] = np.arange(self._next_id, self._next_id + len(newly_confirmed))
            self._next_id += len(newly_confirmed)

        track_ids = np.zeros(len(scores), np.int64)
        if matched:
            tracks, detections = (np.concatenate(rows) for rows in zip(*matched))
            self._motion.update(tracks, boxes[detections])
            self._classes[tracks] = class_ids[detections]
            track_ids[detections] = self._ids[tracks]
        self._lost = ~tracks_matched
        # Also the tracks lost before: holding their size again changes nothing.
        self._motion.hold_size(self._lost)
        kept = (stamp_ns - self._last_strong_ns) <= settings.lost_timeout_s * 1e9
        if tentative_count:
            kept &= tracks_matched | (self._ids != 0)
        kept = kept.nonzero()[0]
        if len(kept) < len(self._ids):
            self._keep(kept)
        born = strong_unmatched.nonzero()[0]
        if len(born):
            born = born[scores[born] >= high_score + settings.birth_margin]
            track_ids[born] = self._start_tracks(boxes[born], class_ids[born], stamp_ns)
        return FrameTracks(published=published, track_ids=track_ids)

    def track(self, detections, stamp_ns, high_score):
        """``update`` on a Detections; returns (the published Detections, their track ids [k] int64, 0: none).

        ``detections`` should reach down to ``settings.low_score``: the detector runs at that
        threshold, and the tracker decides which weaker ones are worth publishing.
        """
        found = self.update(detections.boxes, detections.scores, detections.class_ids, stamp_ns, high_score)
        keep = found.published
        return (Detections(boxes=detections.boxes[keep], scores=detections.scores[keep],
                           class_ids=detections.class_ids[keep]), found.track_ids[keep])

    def _advance_clock(self, stamp_ns):
        """Predict the tracks to ``stamp_ns``, or drop them all on a backward jump or a long pause."""
        last, self._last_stamp_ns = self._last_stamp_ns, stamp_ns
        if last is None:
            return
        dt_s = (stamp_ns - last) / 1e9
        if dt_s < 0.0 or dt_s > self.settings.reset_gap_s:
            self._reset()
            return
        self._motion.predict(dt_s)

    def _keep(self, rows):
        self._motion.keep(rows)
        self._ids, self._lost, self._hits = self._ids[rows], self._lost[rows], self._hits[rows]
        self._classes, self._last_strong_ns = self._classes[rows], self._last_strong_ns[rows]

    def _start_tracks(self, boxes, class_ids, stamp_ns):
        """New tracks at the boxes; returns their ids [m] (0 while tentative)."""
        count = len(boxes)
        if not count:
            return np.zeros(0, np.int64)
        self._motion.add(boxes)
        confirmed_at_once = self.settings.confirm_frames <= 1
        new_ids = np.arange(self._next_id, self._next_id + count) if confirmed_at_once else np.zeros(count, np.int64)
        if confirmed_at_once:
            self._next_id += count
        self._ids = np.concatenate([self._ids, new_ids])
        self._lost = np.concatenate([self._lost, np.zeros(count, bool)])
        self._hits = np.concatenate([self._hits, np.ones(count, np.int64)])
        self._classes = np.concatenate([self._classes, class_ids])
        self._last_strong_ns = np.concatenate([self._last_strong_ns, np.full(count, stamp_ns, np.int64)])
        return new_ids
