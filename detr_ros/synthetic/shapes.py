"""The object classes of the synthetic scenes and how one object is drawn.

Every class differs from the others by its outline AND by its surface pattern, and
the pattern is dark-on-light so that it survives conversion to greyscale; colour is
only a hint (each class has a typical hue, jittered per object). Patterns are laid
out in the object's own normalised frame, so they rotate and scale with it.

An object is described by its nominal size ``size`` (pixels), ``aspect`` (width /
height in the object frame) and ``angle`` (radians). ``render_object`` returns a
square patch centred on the object: ``rgb`` [P, P, 3] float32 0..255 and ``alpha``
[P, P] float32 0..1 (anti-aliased coverage).
"""

from dataclasses import dataclass

import cv2
import numpy as np

# Masks are drawn this many times larger, then area-averaged down: anti-aliased edges.
_SUPERSAMPLE = 4
_SUBPIXEL_BITS = 4


@dataclass(frozen=True)
class ObjectClass:
    name: str
    category_id: int
    hue: float  # typical hue in degrees (0..360)


# Category ids start at 1 and skip 4 (COCO's own ids have gaps too), so every
# consumer has to go through the explicit id <-> training-index mapping.
CLASSES = (
    ObjectClass("bullseye", 1, 0.0),
    ObjectClass("checker_square", 2, 215.0),
    ObjectClass("striped_triangle", 3, 120.0),
    ObjectClass("outlined_star", 5, 52.0),
    ObjectClass("ring", 6, 295.0),
    ObjectClass("hatched_cross", 7, 180.0),
)

CLASS_NAMES = tuple(c.name for c in CLASSES)
CATEGORY_IDS = tuple(c.category_id for c in CLASSES)


def _star_vertices(points=5, inner=0.45):
    angles = np.arange(2 * points) * np.pi / points - np.pi / 2
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _cross_vertices(arm=0.34):
    a = arm
    return np.array(
        [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a)],
        dtype=np.float64,
    )


# Outlines in the object frame, [-1, 1] on both axes.
_POLYGONS = {
    "checker_square": np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], dtype=np.float64),
    "striped_triangle": np.array([(0, -1), (1, 1), (-1, 1)], dtype=np.float64),
    "outlined_star": _star_vertices(),
    "hatched_cross": _cross_vertices(),
}
_RING_INNER_RADIUS = 0.55


def hsv_colour(hue, saturation, value):
    """One RGB colour (float 0..255) from hue in degrees, saturation and value in 0..1."""
    pixel = np.array([[[hue / 2.0 % 180.0, saturation * 255.0, value * 255.0]]], dtype=np.float32)
    return cv2.cvtColor(pixel.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def patch_side(size, aspect):
    """Side of the square patch that holds an object at any rotation."""
    half_w, half_h = _half_extents(size, aspect)
    return int(np.ceil(2.0 * np.hypot(half_w, half_h))) + 3


def _half_extents(size, aspect):
    root = np.sqrt(aspect)
    return size / 2.0 * root, size / 2.0 / root


def _object_frame(side, size, aspect, angle):
    """Normalised object-frame coordinates (u, v) of every patch pixel centre: [P, P] each."""
    centre = (side - 1) / 2.0
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
    x, y = xs - centre, ys - centre
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    half_w, half_h = _half_extents(size, aspect)
    u = (cos_a * x + sin_a * y) / half_w
    v = (-sin_a * x + cos_a * y) / half_h
    return u, v


def _to_patch_pixels(points, side, size, aspect, angle):
    """Object-frame points [n, 2] -> supersampled patch pixel coordinates [n, 2]."""
    half_w, half_h = _half_extents(size, aspect)
    scaled = points * np.array([half_w, half_h])
    cos_a, sin_a = np.cos(angle), np.sin(angle)
    rotation = np.array([[cos_a, -sin_a], [sin_a, cos_a]])
    centre = (side - 1) / 2.0
    return (scaled @ rotation.T + centre + 0.5) * _SUPERSAMPLE - 0.5


def _fixed_point(points):
    return np.round(points * (1 << _SUBPIXEL_BITS)).astype(np.int32)


def _ellipse_mask(canvas, side, size, aspect, angle, radius, value):
    half_w, half_h = _half_extents(size, aspect)
    centre = ((side - 1) / 2.0 + 0.5) * _SUPERSAMPLE - 0.5
    scale = 1 << _SUBPIXEL_BITS
    cv2.ellipse(
        canvas,
        (int(round(centre * scale)), int(round(centre * scale))),
        (int(round(half_w * radius * _SUPERSAMPLE * scale)), int(round(half_h * radius * _SUPERSAMPLE * scale))),
        float(np.degrees(angle)), 0.0, 360.0, value, -1, cv2.LINE_AA, _SUBPIXEL_BITS,
    )


def polygon_alpha(points, side, size, aspect, angle):
    """Anti-aliased coverage [P, P] of an object-frame polygon (points [n, 2])."""
    big = np.zeros((side * _SUPERSAMPLE, side * _SUPERSAMPLE), np.uint8)
    pixels = _to_patch_pixels(points, side, size, aspect, angle)
    cv2.fillPoly(big, [_fixed_point(pixels)], 255, cv2.LINE_AA, _SUBPIXEL_BITS)
    return cv2.resize(big, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _shape_alpha(name, side, size, aspect, angle):
    if name in _POLYGONS:
        return polygon_alpha(_POLYGONS[name], side, size, aspect, angle)
    big = np.zeros((side * _SUPERSAMPLE, side * _SUPERSAMPLE), np.uint8)
    _ellipse_mask(big, side, size, aspect, angle, 1.0, 255)
    if name == "ring":
        _ellipse_mask(big, side, size, aspect, angle, _RING_INNER_RADIUS, 0)
    return cv2.resize(big, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _pattern(name, u, v, side, size, aspect, angle):
    """Where the dark pattern colour goes: float [P, P] in 0..1."""
    if name == "bullseye":
        return ((np.sqrt(u * u + v * v) * 3.5).astype(np.int32) % 2).astype(np.float32)
    if name == "checker_square":
        return ((np.floor((u + 1) * 2) + np.floor((v + 1) * 2)) % 2).astype(np.float32)
    if name == "striped_triangle":
        return (np.floor((v + 1) * 3.0) % 2).astype(np.float32)
    if name == "hatched_cross":
        return (np.floor((u + v + 4) * 2.5) % 2).astype(np.float32)
    if name == "outlined_star":
        # A dark outline a tenth of the size thick: the star minus a shrunken star.
        inner = polygon_alpha(_POLYGONS[name] * 0.72, side, size, aspect, angle)
        return 1.0 - inner
    return np.zeros_like(u)  # ring: plain, its hole is its pattern


def render_object(name, size, aspect, angle, colour, pattern_colour, shading=(0.0, 0.0)):
    """Draw one object of class ``name``.

    colour, pattern_colour: RGB float 0..255; shading: (gx, gy) linear light gradient
    across the object in the object frame (about -0.2..0.2).
    Returns rgb [P, P, 3] float32 0..255 and alpha [P, P] float32 0..1.
    """
    side = patch_side(size, aspect)
    u, v = _object_frame(side, size, aspect, angle)
    alpha = _shape_alpha(name, side, size, aspect, angle)
    pattern = _pattern(name, u, v, side, size, aspect, angle)[..., None]
    rgb = (1.0 - pattern) * np.asarray(colour, np.float32) + pattern * np.asarray(pattern_colour, np.float32)
    light = 1.0 + shading[0] * u + shading[1] * v
    rgb = np.clip(rgb * light[..., None], 0.0, 255.0).astype(np.float32)
    return rgb, alpha
