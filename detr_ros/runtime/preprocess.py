"""Camera image -> network input: resize (stretch or letterbox), colour order, scaling, normalisation.

Everything is written into buffers that a ``Workspace`` allocates once per input shape, so a
camera stream at a steady resolution allocates nothing per frame. ``Placement`` remembers where
the image landed on the network canvas, so that boxes can be mapped back to source pixels.
"""

from dataclasses import dataclass

import cv2
import numpy as np

LETTERBOX_PAD_VALUE = 114  # the grey Ultralytics pads with; any constant works for DETRs
# After scaling to 0..1: None, or the per-channel (R, G, B) mean and standard deviation to subtract
# and divide by (the ImageNet statistics that DINO-backbone models such as RF-DETR are trained with).
NORMALIZATIONS = {
    "none": None,
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
# Source colour order -> (channels expected, slice of channels giving R,G,B)
SOURCE_ORDERS = {
    "rgb": (3, slice(0, 3)),
    "bgr": (3, slice(2, None, -1)),
    "rgba": (4, slice(0, 3)),
    "bgra": (4, slice(2, None, -1)),
    "gray": (1, None),
    "mono": (1, None),
}


@dataclass(frozen=True)
class Placement:
    """Where a source image of (height, width) sits on the network canvas.

    canvas_x = source_x * scale_x + pad_x (same for y), in continuous pixel coordinates.
    """

    height: int
    width: int
    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int

    @classmethod
    def identity(cls, height, width):
        return cls(height, width, 1.0, 1.0, 0, 0)

    def to_source(self, boxes):
        """boxes: [n, 4] xyxy canvas pixels -> [n, 4] xyxy source pixels, clipped to the image (in place)."""
        boxes[:, 0::2] -= self.pad_x
        boxes[:, 1::2] -= self.pad_y
        boxes[:, 0::2] /= self.scale_x
        boxes[:, 1::2] /= self.scale_y
        np.clip(boxes[:, 0::2], 0, self.width, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, self.height, out=boxes[:, 1::2])
        return boxes


def placement_for(height, width, input_size, resize_mode):
    """Placement of a (height, width) image on a canvas of input_size = (H, W)."""
    canvas_h, canvas_w = input_size
    if resize_mode == "stretch":
        return Placement(height, width, canvas_w / width, canvas_h / height, 0, 0)
    scale = min(canvas_w / width, canvas_h / height)
    resized_w = min(canvas_w, round(width * scale))
    resized_h = min(canvas_h, round(height * scale))
    # Per-axis scales of the rounded size, so that mapping back is exact to the pixel grid.
    return Placement(height, width, resized_w / width, resized_h / height,
                     (canvas_w - resized_w) // 2, (canvas_h - resized_h) // 2)


def check_image(image, color_order):
    """Raise ValueError unless image is a uint8 array whose channels fit color_order."""
    if color_order not in SOURCE_ORDERS:
        raise ValueError(f"color order {color_order!r}, expected one of {list(SOURCE_ORDERS)}")
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        found = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"image of type {found}, expected a uint8 numpy array")
    channels = 1 if image.ndim == 2 else (image.shape[2] if image.ndim == 3 else -1)
    expected = SOURCE_ORDERS[color_order][0]
    if channels != expected or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(
            f"image of shape {image.shape} for color order {color_order!r}, "
            f"expected [height, width{', ' + str(expected) if expected > 1 else ''}] with height, width > 0"
        )


class Preprocessor:
    """Fills one [3, H, W] float32 slot of the input batch from one camera image.

    input_size: (H, W) of the network input; resize_mode: "stretch" | "letterbox";
    model_color_order: "rgb" | "bgr" channel order the network expects; scale: factor applied to 0..255;
    normalization: a NORMALIZATIONS key, applied after scaling.
    """

    def __init__(self, input_size, resize_mode, model_color_order, scale, normalization="none"):
        self.input_size = tuple(input_size)
        self.resize_mode = resize_mode
        self.model_color_order = model_color_order
        self.scale = np.float32(scale)
        statistics = NORMALIZATIONS[normalization]
        channels = slice(None, None, -1 if model_color_order == "bgr" else 1)  # the statistics are R, G, B
        self.mean, self.std = (None, None) if statistics is None else (
            np.asarray(values, np.float32)[channels, None, None] for values in statistics)  # [3, 1, 1]

    def new_canvases(self):
        """uint8 canvases, one per source channel count, reused for every frame."""
        height, width = self.input_size
        return {channels: np.empty((height, width) if channels == 1 else (height, width, channels), np.uint8)
                for channels in (1, 3, 4)}

    def fill(self, slot, image, color_order, canvases):
        """slot: [3, H, W] float32 view to write; returns the image's Placement on the canvas."""
        check_image(image, color_order)
        channels, rgb_slice = SOURCE_ORDERS[color_order]
        height, width = image.shape[:2]
        placement = placement_for(height, width, self.input_size, self.resize_mode)
        canvas_h, canvas_w = self.input_size
        if (height, width) == (canvas_h, canvas_w):
            canvas = image
        else:
            canvas = canvases[channels]
            resized_w = round(width * placement.scale_x)
            resized_h = round(height * placement.scale_y)
            if self.resize_mode == "letterbox":
                canvas.fill(LETTERBOX_PAD_VALUE)
                target = canvas[placement.pad_y:placement.pad_y + resized_h, placement.pad_x:placement.pad_x + resized_w]
            else:
                target = canvas
            cv2.resize(image.reshape(height, width) if channels == 1 else image,
                       (target.shape[1], target.shape[0]), dst=target, interpolation=cv2.INTER_LINEAR)
        if channels == 1:
            np.multiply(canvas.reshape(canvas_h, canvas_w), self.scale, out=slot[0], casting="unsafe")
            slot[1] = slot[0]
            slot[2] = slot[0]
        else:
            planes = canvas.transpose(2, 0, 1)[rgb_slice]
            if self.model_color_order == "bgr":
                planes = planes[::-1]
            np.multiply(planes, self.scale, out=slot, casting="unsafe")
        if self.mean is not None:
            slot -= self.mean
            slot /= self.std
        return placement
