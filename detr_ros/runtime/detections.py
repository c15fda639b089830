"""Detections of one image, and the filter that turns raw model outputs into them."""

from dataclasses import dataclass

import cv2
import numpy as np

from detr_ros.errors import ConfigError

# Defaults of every detecting surface (Detector, detector node, detect), chosen together with the
# duplicate suppression below: the lower threshold recovers objects, the suppression the precision.
DEFAULT_SCORE_THRESHOLD = 0.4
# Same-class boxes overlapping more than this are one object seen twice; 1.0 keeps every box.
DEFAULT_DUPLICATE_IOU = 0.8


def check_fraction(name, value):
    """``value`` as a float if it lies in [0, 1] (a score threshold, an IoU); else a ConfigError naming it."""
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name}={value!r}, expected a number in [0, 1]")
    return float(value)


def check_positive_integer(name, value):
    """``value`` if it is an integer of at least 1 (a count, a size); else a ConfigError naming it."""
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r}, expected a positive integer")
    return value


@dataclass
class Detections:
    """What a detector found in one image, best score first.

    boxes: [n, 4] float32 xyxy in source-image pixels; scores: [n] float32;
    class_ids: [n] int64 training-class index (Detector.class_names[i], Detector.category_ids[i]).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self):
        return len(self.scores)

    def above(self, score_threshold):
        """The detections scoring at least ``score_threshold``, in order."""
        keep = self.scores >= score_threshold
        return Detections(boxes=self.boxes[keep], scores=self.scores[keep], class_ids=self.class_ids[keep])


def select(boxes, scores, labels, placement, *, score_threshold, classes, max_detections,
           duplicate_iou=DEFAULT_DUPLICATE_IOU):
    """Filter one image's raw outputs and map its boxes to source pixels.

    boxes: [K, 4] xyxy canvas pixels; scores: [K]; labels: [K];
    classes: allow-list of class ids or None for all; max_detections: cap on the count kept;
    duplicate_iou: of two same-class boxes overlapping more than this, only the better one is kept.
    """
    keep = scores >= score_threshold
    if classes is not None:
        keep &= np.isin(labels, classes)
    kept = np.flatnonzero(keep)
    kept = kept[np.argsort(-scores[kept], kind="stable")]
    if duplicate_iou < 1.0 and len(kept) > 1:
        kept = kept[without_duplicates(boxes[kept], labels[kept], duplicate_iou)]
    kept = kept[:max_detections]
    return Detections(
        boxes=placement.to_source(boxes[kept].astype(np.float32)),
        scores=scores[kept].astype(np.float32),
        class_ids=labels[kept].astype(np.int64),
    )


def iou_matrix(a, b):
    """IoU [n, m] of every box of ``a`` [n, 4] with every box of ``b`` [m, 4] (xyxy)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    # Plain ufuncs: on a frame's few dozen boxes, numpy's per-call overhead is most of the time.
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    intersection = np.maximum(width, 0.0) * np.maximum(height, 0.0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return intersection / np.maximum(area_a[:, None] + area_b[None, :] - intersection, 1e-9)


def without_duplicates(boxes, labels, iou_threshold):
    """Indices of the boxes left by non-maximum suppression, in their given order.

    boxes: [n, 4] xyxy, best score first; labels: [n] to suppress within each class only, or None
    to suppress across classes. A small RT-DETR, short of training, sometimes answers one object
    with two queries; its one-to-one matching leaves no other guard.
    """
    boxes = np.asarray(boxes, np.float64)
    corners = boxes[:, :2]
    if labels is not None:
        # Shifting each class to its own region lets one plain NMS call act per class (OpenCV 4.5 has
        # no batched NMS); the shift is larger than any box coordinate.
        corners = corners + (labels.astype(np.float64) * (np.abs(boxes).max() + 1.0))[:, None]
    # NMS needs only the ranking, and ranks are never below its (non-negative) score threshold.
    ranks = np.arange(len(boxes), 0, -1, dtype=np.float32)
    xywh = np.concatenate([corners, boxes[:, 2:] - boxes[:, :2]], axis=1)
    kept = cv2.dnn.NMSBoxes(xywh, ranks, 0.0, float(iou_threshold))
    kept = np.asarray(kept, np.int64).reshape(-1)
    kept.sort()
    return kept
