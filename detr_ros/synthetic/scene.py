"""Still scenes: objects of the classes in ``shapes`` over textured, cluttered backgrounds.

``SceneGenerator(width, height, seed).image(index)`` is deterministic: the same
(seed, index) always gives the same picture, whatever else was generated before, so a
dataset can be regenerated piecewise and a held-out split is simply another seed.

What makes the scenes honest rather than trivially easy: object sizes spread
log-uniformly from ``min_size`` (12 px) to half the shorter image side; objects may
overlap and be cut by the border, and foreground clutter may cover them, as long as
at least ``min_visible`` of each object stays visible; distractors with edges and
texture; per-image contrast/brightness change, blur and sensor noise. A ground-truth
box is the tight box around the visible part of an object (the COCO convention).
"""

from dataclasses import dataclass

import cv2
import numpy as np

from detr_ros.synthetic.backgrounds import background, clutter_item
from detr_ros.synthetic.shapes import CLASSES, hsv_colour, render_object

# Placement tries per object before giving up on it (crowded scene).
_PLACEMENT_TRIES = 20


@dataclass(frozen=True)
class ObjectAnnotation:
    """Ground truth of one object. box: (x0, y0, x1, y1) in pixels, pixel edges (x1 exclusive).

    track_id: the object's identity in a video (0 in still scenes); position: (x, y, z) metres in
    the camera's optical frame of the point at the object's distance behind its box centre, where
    the video renders depth (None otherwise).
    """

    class_index: int  # index into shapes.CLASSES (= training class id)
    category_id: int  # dataset category id
    name: str
    box: tuple
    area: int  # visible pixels
    visible_fraction: float
    track_id: int = 0
    position: tuple = None


@dataclass(frozen=True)
class Appearance:
    """Everything about an object but its position."""

    class_index: int
    size: float
    aspect: float
    angle: float
    colour: tuple
    pattern_colour: tuple
    shading: tuple

    def render(self, size=None, angle=None):
        return render_object(
            CLASSES[self.class_index].name,
            self.size if size is None else size,
            self.aspect,
            self.angle if angle is None else angle,
            self.colour,
            self.pattern_colour,
            self.shading,
        )


def sample_appearance(rng, min_size, max_size):
    class_index = int(rng.integers(len(CLASSES)))
    hue = CLASSES[class_index].hue + rng.normal(0.0, 12.0)
    value = rng.uniform(0.55, 1.0)
    saturation = rng.uniform(0.45, 1.0)
    return Appearance(
        class_index=class_index,
        size=float(np.exp(rng.uniform(np.log(min_size), np.log(max_size)))),
        aspect=float(np.exp(rng.uniform(np.log(0.75), np.log(1.33)))),
        angle=float(rng.uniform(0.0, 2.0 * np.pi)),
        colour=tuple(hsv_colour(hue, saturation, value)),
        pattern_colour=tuple(hsv_colour(hue, saturation, value * rng.uniform(0.12, 0.4))),
        shading=tuple(rng.uniform(-0.2, 0.2, 2)),
    )


class Composition:
    """An image being composed layer by layer, tracking which object pixels stay visible."""

    def __init__(self, image):
        self.image = image  # [H, W, 3] float32 RGB 0..255
        self.height, self.width = image.shape[:2]
        self.visible_masks = []  # per object: [H, W] bool
        self.full_areas = []  # per object: pixels it would cover unoccluded, in or out of the image
        self.class_indices = []
        self.track_ids = []

    def _window(self, side, centre_x, centre_y):
        """Image and patch slices where a patch of ``side`` centred at (centre_x, centre_y) lands."""
        x0 = int(round(centre_x - (side - 1) / 2.0))
        y0 = int(round(centre_y - (side - 1) / 2.0))
        ix0, iy0 = max(0, x0), max(0, y0)
        ix1, iy1 = min(self.width, x0 + side), min(self.height, y0 + side)
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        return (slice(iy0, iy1), slice(ix0, ix1)), (slice(iy0 - y0, iy1 - y0), slice(ix0 - x0, ix1 - x0))

    def coverage(self, alpha, centre_x, centre_y):
        """[H, W] bool: image pixels the patch would cover (alpha >= 0.5)."""
        cover = np.zeros((self.height, self.width), bool)
        window = self._window(alpha.shape[0], centre_x, centre_y)
        if window is not None:
            cover[window[0]] = alpha[window[1]] >= 0.5
        return cover

    def keeps_visible(self, cover, min_visible):
        """Would every object so far keep at least ``min_visible`` of itself under ``cover``?"""
        return all(
            np.count_nonzero(mask & ~cover) >= min_visible * full
            for mask, full in zip(self.visible_masks, self.full_areas)
        )

    def paint(self, rgb, alpha, centre_x, centre_y, cover):
        window = self._window(alpha.shape[0], centre_x, centre_y)
        if window is not None:
            image_part, patch_part = window
            a = alpha[patch_part][..., None]
            self.image[image_part] = (1.0 - a) * self.image[image_part] + a * rgb[patch_part]
        for mask in self.visible_masks:
            mask &= ~cover

    def add_object(self, class_index, rgb, alpha, centre_x, centre_y, cover, track_id=0):
        self.paint(rgb, alpha, centre_x, centre_y, cover)
        self.visible_masks.append(cover.copy())
        self.full_areas.append(int(np.count_nonzero(alpha >= 0.5)))
        self.class_indices.append(class_index)
        self.track_ids.append(track_id)

    def annotations(self, min_visible=0.0):
        found = []
        for class_index, mask, full, track_id in zip(self.class_indices, self.visible_masks, self.full_areas,
                                                     self.track_ids):
            area = int(np.count_nonzero(mask))
            if area == 0 or area < min_visible * full:
                continue
            ys, xs = np.nonzero(mask)
            object_class = CLASSES[class_index]
            found.append(ObjectAnnotation(
                class_index=class_index,
                category_id=object_class.category_id,
                name=object_class.name,
                box=(float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)),
                area=area,
                visible_fraction=area / max(1, full),
                track_id=track_id,
            ))
        return found


@dataclass(frozen=True)
class CameraSettings:
    """Exposure, defocus and sensor noise of one picture (or of a whole video)."""

    contrast: float
    brightness: float
    blur_sigma: float  # 0: sharp
    noise_sigma: float

    @staticmethod
    def sample(rng):
        return CameraSettings(
            contrast=float(rng.uniform(0.75, 1.25)),
            brightness=float(rng.uniform(-25.0, 25.0)),
            blur_sigma=float(rng.uniform(0.4, 1.4)) if rng.random() < 0.5 else 0.0,
            noise_sigma=float(rng.uniform(1.0, 10.0)),
        )


def camera_effects(image, settings, rng):
    """Apply ``settings`` to an RGB float image, fresh noise from ``rng``: uint8 BGR [H, W, 3]."""
    image = (image - 128.0) * settings.contrast + 128.0 + settings.brightness
    if settings.blur_sigma > 0.0:
        image = cv2.GaussianBlur(image, (0, 0), settings.blur_sigma)
    image = image + settings.noise_sigma * rng.standard_normal(image.shape).astype(np.float32)
    rgb = np.clip(image, 0.0, 255.0).astype(np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


class SceneGenerator:
    """Deterministic still scenes of ``width`` x ``height`` pixels."""

    def __init__(self, width, height, seed, *, max_objects=10, min_size=12.0, min_visible=0.5,
                 empty_fraction=0.03):
        self.width, self.height, self.seed = int(width), int(height), int(seed)
        self.max_objects = max_objects
        self.min_size = min_size
        self.max_size = max(min_size, min(width, height) / 2.0)
        self.min_visible = min_visible
        self.empty_fraction = empty_fraction

    def image(self, index):
        """Scene number ``index``: (bgr uint8 [H, W, 3], list of ObjectAnnotation)."""
        rng = np.random.default_rng([self.seed, index])
        composition = Composition(background(rng, self.height, self.width))
        for _ in range(int(rng.integers(0, 7))):
            self._place_clutter(rng, composition)
        count = 0 if rng.random() < self.empty_fraction else int(rng.integers(1, self.max_objects + 1))
        for _ in range(count):
            self._place_object(rng, composition)
        for _ in range(int(rng.integers(0, 4))):
            self._place_clutter(rng, composition)
        annotations = composition.annotations()
        return camera_effects(composition.image, CameraSettings.sample(rng), rng), annotations

    def _random_centre(self, rng, side):
        # Up to about a quarter of an object may hang over the border.
        margin = side * 0.25
        return (rng.uniform(margin, max(margin + 1, self.width - margin)),
                rng.uniform(margin, max(margin + 1, self.height - margin)))

    def _place_object(self, rng, composition):
        appearance = sample_appearance(rng, self.min_size, self.max_size)
        rgb, alpha = appearance.render()
        full = np.count_nonzero(alpha >= 0.5)
        for _ in range(_PLACEMENT_TRIES):
            centre = self._random_centre(rng, alpha.shape[0])
            cover = composition.coverage(alpha, *centre)
            if np.count_nonzero(cover) >= self.min_visible * full and composition.keeps_visible(cover, self.min_visible):
                composition.add_object(appearance.class_index, rgb, alpha, *centre, cover)
                return

    def _place_clutter(self, rng, composition):
        size = float(np.exp(rng.uniform(np.log(10.0), np.log(self.max_size * 1.2))))
        rgb, alpha = clutter_item(rng, size)
        for _ in range(_PLACEMENT_TRIES):
            centre = self._random_centre(rng, alpha.shape[0])
            cover = composition.coverage(alpha, *centre)
            if composition.keeps_visible(cover, self.min_visible):
                composition.paint(rgb, alpha, *centre, cover)
                return
