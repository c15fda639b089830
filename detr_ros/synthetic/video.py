"""Synthetic video: the scene objects moving smoothly, with ground truth for every frame.

``SceneVideo(width, height, seed).frame(i)`` is a pure function of (seed, i), so a
camera node can publish frame i at any rate, skip frames or restart, and a test can ask
for the ground truth of exactly the frame that was published. Objects glide in straight
lines and bounce off the image border, slowly turn and breathe in size; they pass in
front of each other (fixed depth order), so occlusions come and go.
"""

from dataclasses import dataclass

import numpy as np

from detr_ros.synthetic.backgrounds import background, clutter_item
from detr_ros.synthetic.scene import CameraSettings, Composition, camera_effects, sample_appearance

# An object hidden behind others beyond this point is left out of that frame's ground truth.
_MIN_VISIBLE_IN_FRAME = 0.3


@dataclass(frozen=True)
class _Motion:
    start: tuple  # (x, y) centre at frame 0
    velocity: tuple  # pixels per frame
    spin: float  # radians per frame
    breathing: float  # relative size change amplitude
    period: float  # frames per size cycle
    phase: float


def _bounce(position, low, high):
    """Position moving freely from ``low``, reflected back and forth between low and high."""
    span = max(high - low, 1e-6)
    wrapped = np.mod(position - low, 2.0 * span)
    return low + (wrapped if wrapped <= span else 2.0 * span - wrapped)


class SceneVideo:
    """Frames of ``width`` x ``height`` with ``num_objects`` moving objects (3..7 when None)."""

    def __init__(self, width, height, seed, num_objects=None):
        self.width, self.height, self.seed = int(width), int(height), int(seed)
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
        speed_scale = shorter / 480.0
        self._objects = []
        for _ in range(count):
            appearance = sample_appearance(rng, 16.0, max(16.0, shorter / 3.0))
            direction = rng.uniform(0, 2 * np.pi)
            speed = rng.uniform(0.6, 2.5) * speed_scale
            motion = _Motion(
                start=(rng.uniform(0, self.width), rng.uniform(0, self.height)),
                velocity=(speed * np.cos(direction), speed * np.sin(direction)),
                spin=float(rng.uniform(-0.03, 0.03)),
                breathing=float(rng.uniform(0.0, 0.25)),
                period=float(rng.uniform(60.0, 240.0)),
                phase=float(rng.uniform(0, 2 * np.pi)),
            )
            self._objects.append((appearance, motion))

    @property
    def num_objects(self):
        return len(self._objects)

    def frame(self, index):
        """Frame ``index`` (>= 0): (bgr uint8 [H, W, 3], list of ObjectAnnotation)."""
        composition = Composition(self._background.copy())
        for appearance, motion in self._objects:
            size = appearance.size * (1.0 + motion.breathing * np.sin(2 * np.pi * index / motion.period + motion.phase))
            rgb, alpha = appearance.render(size=size, angle=appearance.angle + motion.spin * index)
            # Keep the whole object inside the frame: bounce at half its patch size.
            half = alpha.shape[0] / 2.0
            centre_x = _bounce(motion.start[0] + motion.velocity[0] * index, half, self.width - half)
            centre_y = _bounce(motion.start[1] + motion.velocity[1] * index, half, self.height - half)
            cover = composition.coverage(alpha, centre_x, centre_y)
            composition.add_object(appearance.class_index, rgb, alpha, centre_x, centre_y, cover)
        annotations = composition.annotations(min_visible=_MIN_VISIBLE_IN_FRAME)
        rng = np.random.default_rng([self.seed, 1, index])
        return camera_effects(composition.image, self._camera, rng), annotations
