"""Training augmentations with torchvision.transforms.v2, which move the boxes with the image.

The RT-DETR recipe: photometric distortion, zoom-out (objects get smaller, canvas padded),
IoU-constrained random crop (objects get larger), horizontal flip, then a resize to the
network input (stretched, as the exported model does it) and box sanitising. Multi-scale
training picks the resize target per batch (see sampler.py), so every image of a batch
shares one size.
"""

from dataclasses import dataclass

from torchvision.transforms import v2


@dataclass(frozen=True)
class AugmentationConfig:
    photometric_p: float = 0.5
    zoom_out_p: float = 0.5
    zoom_out_max: float = 2.0  # the canvas grows up to this factor per side
    iou_crop_p: float = 0.8
    flip_p: float = 0.5


def train_augmentations(config: AugmentationConfig):
    """(image uint8 [3, H, W], {"boxes", "labels"}) -> the same, augmented; size varies."""
    return v2.Compose([
        v2.RandomPhotometricDistort(p=config.photometric_p),
        v2.RandomApply([v2.RandomZoomOut(fill=0, side_range=(1.0, config.zoom_out_max))], p=config.zoom_out_p),
        v2.RandomApply([v2.RandomIoUCrop()], p=config.iou_crop_p),
        v2.SanitizeBoundingBoxes(min_size=1),
        v2.RandomHorizontalFlip(p=config.flip_p),
    ])


def resize_and_sanitize(size):
    """Resize to ``size`` = (height, width), ignoring aspect ratio, and drop boxes that vanished."""
    return v2.Compose([v2.Resize(tuple(size), antialias=True), v2.SanitizeBoundingBoxes(min_size=1)])
