"""Detections of one image, and the filter that turns raw model outputs into them."""

from dataclasses import dataclass

import numpy as np


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


def select(boxes, scores, labels, placement, *, score_threshold, classes, max_detections):
    """Filter one image's raw outputs and map its boxes to source pixels.

    boxes: [K, 4] xyxy canvas pixels; scores: [K]; labels: [K];
    classes: allow-list of class ids or None for all; max_detections: cap on the count kept.
    """
    keep = scores >= score_threshold
    if classes is not None:
        keep &= np.isin(labels, classes)
    kept = np.flatnonzero(keep)
    kept = kept[np.argsort(-scores[kept], kind="stable")][:max_detections]
    return Detections(
        boxes=placement.to_source(boxes[kept].astype(np.float32)),
        scores=scores[kept].astype(np.float32),
        class_ids=labels[kept].astype(np.int64),
    )
