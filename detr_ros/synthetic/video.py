"""Synthetic video: the scene objects moving smoothly, with ground truth for every frame.

``SceneVideo(width, height, seed).frame(i)`` is a pure function of (seed, i), so a
camera node can publish frame i at any rate, skip frames or restart, and a test can ask
for the ground truth of exactly the frame that was published. Objects glide in straight
lines, slowly turn and breathe in size; they pass in front of each other (fixed depth
order), so occlusions come and go. By default a fixed set of objects bounces off the image
border; with ``traffic`` objects cross the picture and leave, and new ones come in.

Every object has an identity, ``track_id`` in its annotations (never reused within a video, as
MOT and TAO ground truth), and a distance from the camera: ``render(i)`` adds the aligned depth
image, objects as flat cut-outs facing the camera in front of a background plane, seen through
``intrinsics`` (a pinhole camera), and each annotation's ``position``, the 3D point at the
object's distance behind the centre of its box.
"""

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from detr_ros.runtime.depth import CameraIntrinsics, back_project, box_centres
from detr_ros.synthetic.backgrounds import background, clutter_item
from detr_ros.synthetic.scene import CameraSettings, Composition, camera_effects, sample_appearance

# An object hidden behind others beyond this point is left out of that frame's ground truth.
_MIN_VISIBLE_IN_FRAME = 0.3
# A 60 degree horizontal field of view, about that of common RGB-D cameras' depth-aligned colour.
HORIZONTAL_FOV_DEG = 60.0
# The background is a wall this far away; objects stand between NEAREST and FARTHEST, later-drawn
# (in front) ones nearer, so that depth and occlusion agree.
BACKGROUND_DISTANCE_M = 8.0
NEAREST_OBJECT_M, FARTHEST_OBJECT_M = 1.0, 6.0
# traffic: frames between one object leaving and the next entering in its lane.
_MAX_TRAFFIC_GAP = 40


@dataclass(frozen=True)
class _Motion:
    start: tuple  # (x, y) centre at frame 0
    velocity: tuple  # pixels per frame
    spin: float  # radians per frame
    breathing: float  # relative size change amplitude
    period: float  # frames per size cycle
    phase: float


@dataclass(frozen=True)
class _Visit:
    """One object crossing the picture in traffic mode: present for frames [first, first + frames)."""

    track_id: int
    appearance: object
    motion: _Motion
    first: float
    frames: float


@dataclass
class VideoFrame:
    """One frame: bgr uint8 [H, W, 3]; depth_m float32 [H, W] metres; annotations: ObjectAnnotation list."""

    bgr: np.ndarray
    depth_m: np.ndarray
    annotations: list


def _bounce(position, low, high):
    """Position moving freely from ``low``, reflected back and forth between low and high."""
    span = max(high - low, 1e-6)
    wrapped = np.mod(position - low, 2.0 * span)
    return low + (wrapped if wrapped <= span else 2.0 * span - wrapped)


def _sample_motion(rng, speed_range, speed_scale, width, height):
    """A motion from a random point of the picture, at a speed in speed_range (pixels per frame at 480 px)."""
    direction = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(*speed_range) * speed_scale
    return _Motion(
        start=(rng.uniform(0, width), rng.uniform(0, height)),
        velocity=(speed * np.cos(direction), speed * np.sin(direction)),
        spin=float(rng.uniform(-0.03, 0.03)),
        breathing=float(rng.uniform(0.0, 0.25)),
        period=float(rng.uniform(60.0, 240.0)),
        phase=float(rng.uniform(0, 2 * np.pi)),
    )


class SceneVideo:
    """Frames of ``width`` x ``height`` with ``num_objects`` moving objects (3..7 when None), or that
    many lanes of objects passing through with ``traffic``."""

    def __init__(self, width, height, seed, num_objects=None, traffic=False):
        self.width, self.height, self.seed = int(width), int(height), int(seed)
        self.traffic = bool(traffic)
        rng = np.random.default_rng([self.seed, 0x51DE0])
        base = background(rng, self.height, self.width)
        still = Composition(base)
        shorter = min(self.width, self.height)
        for _ in range(int(rng.integers(2, 6))):
            rgb, alpha = clutter_item(rng, rng.uniform(12.0, shorter / 3.0))
            centre = (rng.uniform(0, self.width), rng.uniform(0, self.height))
            still.paint(rgb, alpha, *centre, still.coverage(alpha, *centre))
        self._background = still.image
        # One camera for the whole video: exposure and focus do not flicker between frames.
        self._camera = CameraSettings.sample(rng)
        count = int(rng.integers(3, 8)) if num_objects is None else int(num_objects)
        self._speed_scale = shorter / 480.0
        self._max_size = max(16.0, shorter / 3.0)
        self._objects = []
        if not self.traffic:
            for _ in range(count):
                appearance = sample_appearance(rng, 16.0, self._max_size)
                self._objects.append((appearance, _sample_motion(rng, (0.6, 2.5), self._speed_scale, self.width,
                                                                 self.height)))
        self._lanes = [[] for _ in range(count)] if self.traffic else []
        # Distances come from a generator of their own, so adding them left every picture as it was.
        distances = np.random.default_rng([self.seed, 0xDE97]).uniform(0.0, 1.0, count)
        step = (FARTHEST_OBJECT_M - NEAREST_OBJECT_M) / count
        # Object (or lane) k is drawn after k others: its own band of distances, nearer than theirs.
        self._distances = FARTHEST_OBJECT_M - step * (np.arange(count) + distances)
        focal = self.width / 2.0 / math.tan(math.radians(HORIZONTAL_FOV_DEG) / 2.0)
        self.intrinsics = CameraIntrinsics(focal, focal, (self.width - 1) / 2.0, (self.height - 1) / 2.0,
                                           self.width, self.height)

    @property
    def num_objects(self):
        """Objects (or lanes of passing objects) in the video."""
        return len(self._distances)

    def frame(self, index):
        """Frame ``index`` (>= 0): (bgr uint8 [H, W, 3], list of ObjectAnnotation)."""
        rendered = self.render(index)
        return rendered.bgr, rendered.annotations

    def render(self, index):
        """Frame ``index`` (>= 0) with its depth image and 3D ground truth: a VideoFrame."""
        composition = Composition(self._background.copy())
        depth = np.full((self.height, self.width), BACKGROUND_DISTANCE_M, np.float32)
        distances = {}
        for layer, (track_id, appearance, motion, frames_in) in enumerate(self._present(index)):
            size = appearance.size * (1.0 + motion.breathing * np.sin(2 * np.pi * index / motion.period
                                                                      + motion.phase))
            rgb, alpha = appearance.render(size=size, angle=appearance.angle + motion.spin * index)
            centre_x = motion.start[0] + motion.velocity[0] * frames_in
            centre_y = motion.start[1] + motion.velocity[1] * frames_in
            if not self.traffic:
                # Keep the whole object inside the frame: bounce at half its patch size.
                half = alpha.shape[0] / 2.0
                centre_x = _bounce(centre_x, half, self.width - half)
                centre_y = _bounce(centre_y, half, self.height - half)
            cover = composition.coverage(alpha, centre_x, centre_y)
            composition.add_object(appearance.class_index, rgb, alpha, centre_x, centre_y, cover, track_id)
            depth[cover] = distances[track_id] = self._distances[layer]
        annotations = []
        for item in composition.annotations(min_visible=_MIN_VISIBLE_IN_FRAME):
            position = back_project(box_centres([item.box])[0], distances[item.track_id], self.intrinsics)
            annotations.append(dataclasses.replace(item, position=tuple(position.tolist())))
        rng = np.random.default_rng([self.seed, 1, index])
        return VideoFrame(camera_effects(composition.image, self._camera, rng), depth, annotations)

    def _present(self, index):
        """(track_id, appearance, motion, frames since the motion's start) of each object in frame
        ``index``, one per layer, in drawing order; a traffic lane without an object yields a placeholder
        that draws nothing."""
        if not self.traffic:
            return [(k + 1, appearance, motion, index) for k, (appearance, motion) in enumerate(self._objects)]
        present = []
        for lane in range(len(self._lanes)):
            visit = self._visit_at(lane, index)
            if visit is not None:
                present.append((visit.track_id, visit.appearance, visit.motion, index - visit.first))
        return present

    def _visit_at(self, lane, index):
        """The object crossing in ``lane`` at frame ``index``, or None between two."""
        visits = self._lanes[lane]
        while not visits or visits[-1].first + visits[-1].frames <= index:
            visits.append(self._next_visit(lane, visits))
        for visit in visits:
            if visit.first <= index < visit.first + visit.frames:
                return visit
        return None

    def _next_visit(self, lane, visits):
        """The lane's next object: it enters from outside one border and leaves past another."""
        number = len(visits)
        rng = np.random.default_rng([self.seed, 0x7AFF1C, lane, number])
        appearance = sample_appearance(rng, 16.0, self._max_size)
        # Half the diagonal of the largest patch it can breathe to: fully outside at both ends.
        margin = appearance.size * 1.25 * 0.75 + 2.0
        entry = self._border_point(rng, margin)
        exit_point = self._border_point(rng, margin)
        while math.dist(entry, exit_point) < min(self.width, self.height):
            exit_point = self._border_point(rng, margin)
        speed = rng.uniform(2.0, 6.0) * self._speed_scale
        frames = math.dist(entry, exit_point) / speed
        velocity = ((exit_point[0] - entry[0]) / frames, (exit_point[1] - entry[1]) / frames)
        motion = dataclasses.replace(_sample_motion(rng, (0.0, 0.0), 0.0, self.width, self.height), start=entry,
                                     velocity=velocity)
        if number == 0:
            first = -rng.uniform(0.0, frames)  # already on its way when the video starts
        else:
            first = visits[-1].first + visits[-1].frames + rng.uniform(0.0, _MAX_TRAFFIC_GAP)
        # Ids interleave the lanes, so they are unique however many objects each lane sends.
        return _Visit(lane + 1 + number * len(self._lanes), appearance, motion, first, frames)

    def _border_point(self, rng, margin):
        """A point ``margin`` pixels outside a random border of the picture."""
        side = int(rng.integers(4))
        along = rng.uniform(0.0, 1.0)
        if side < 2:
            return (along * self.width, -margin if side == 0 else self.height + margin)
        return (-margin if side == 2 else self.width + margin, along * self.height)
