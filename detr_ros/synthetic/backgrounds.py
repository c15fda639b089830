"""Textured backgrounds and clutter (things that are not objects of any class).

Backgrounds: smooth multi-scale noise, colour gradients with grain, and wood/fabric-like
streaks. Clutter: irregular blobs, sticks and scribbles drawn over the background and
sometimes in front of objects, so that "something with edges" is not enough to be a
detection. All return float32 RGB 0..255 arrays.
"""

import cv2
import numpy as np

from detr_ros.synthetic.shapes import hsv_colour, polygon_alpha


def _smooth_noise(rng, height, width, cell):
    """Noise [H, W] in about -1..1 that varies over roughly ``cell`` pixels."""
    small = rng.standard_normal((max(2, height // cell + 2), max(2, width // cell + 2))).astype(np.float32)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _random_colour(rng, value_range=(0.25, 0.9), saturation_range=(0.05, 0.7)):
    return hsv_colour(rng.uniform(0, 360), rng.uniform(*saturation_range), rng.uniform(*value_range))


def background(rng, height, width):
    """A textured background: [H, W, 3] float32 0..255."""
    kind = rng.integers(3)
    base_a, base_b = _random_colour(rng), _random_colour(rng)
    if kind == 0:  # multi-scale noise between two colours
        field = sum(
            weight * _smooth_noise(rng, height, width, cell)
            for weight, cell in ((1.0, 96), (0.5, 32), (0.25, 10))
        )
        mix = np.clip(0.5 + 0.3 * field, 0.0, 1.0)
    elif kind == 1:  # linear gradient
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = np.cos(angle) * xs / width + np.sin(angle) * ys / height
        mix = (ramp - ramp.min()) / max(1e-6, float(np.ptp(ramp)))
    else:  # streaks, like wood grain or fabric
        angle = rng.uniform(0, np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        along = np.cos(angle) * xs + np.sin(angle) * ys
        wobble = 12.0 * _smooth_noise(rng, height, width, 48)
        mix = 0.5 + 0.35 * np.sin(along / rng.uniform(3.0, 9.0) + wobble)
    image = (1.0 - mix[..., None]) * base_a + mix[..., None] * base_b
    grain = rng.uniform(2.0, 10.0) * rng.standard_normal((height, width, 1)).astype(np.float32)
    return np.clip(image + grain, 0.0, 255.0).astype(np.float32)


def _blob(rng, size):
    """An irregular closed outline: lumpy, so never a clean disc or polygon of a class."""
    count = int(rng.integers(9, 16))
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    radii = rng.uniform(0.55, 1.0, count)
    points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    side = int(np.ceil(size * 1.5)) + 3
    return polygon_alpha(points, side, size, 1.0, 0.0)


def _stick(rng, size):
    """A long thin bar (aspect 5..12): unlike any class outline."""
    thin = 1.0 / rng.uniform(5.0, 12.0)
    points = np.array([(-1, -thin), (1, -thin), (1, thin), (-1, thin)], dtype=np.float64)
    angle = rng.uniform(0, np.pi)
    side = int(np.ceil(size * 1.1)) + 3
    return polygon_alpha(points, side, size, 1.0, angle)


def _scribble(rng, size):
    side = int(np.ceil(size)) + 3
    canvas = np.zeros((side, side), np.uint8)
    steps = rng.normal(0, size / 6.0, (int(rng.integers(4, 9)), 2)).cumsum(axis=0)
    points = np.clip(steps - steps.mean(axis=0) + side / 2.0, 0, side - 1)
    thickness = int(rng.integers(1, max(2, int(size // 25) + 2)))
    cv2.polylines(canvas, [np.round(points).astype(np.int32)], False, 255, thickness, cv2.LINE_AA)
    return canvas.astype(np.float32) / 255.0


def clutter_item(rng, size):
    """One distractor: rgb [P, P, 3] and alpha [P, P], with its own texture."""
    kind = rng.integers(3)
    alpha = (_blob, _stick, _scribble)[kind](rng, size)
    side = alpha.shape[0]
    colour_a, colour_b = _random_colour(rng, (0.2, 1.0), (0.0, 1.0)), _random_colour(rng, (0.2, 1.0), (0.0, 1.0))
    mix = np.clip(0.5 + 0.5 * _smooth_noise(rng, side, side, max(3, side // 4)), 0.0, 1.0)[..., None]
    rgb = (1.0 - mix) * colour_a + mix * colour_b
    return rgb.astype(np.float32), alpha
