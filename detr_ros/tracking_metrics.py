"""Multi-object tracking metrics with motmetrics: MOTA, IDF1, identity switches, and their parts.

numpy and motmetrics only (no torch). A ground-truth object and a track match when their boxes
overlap by IoU >= 0.5 (the MOTChallenge rule), whatever their classes, so a class mistake costs
detection metrics (``detr-ros eval``), not identity ones.
"""

import numpy as np

from detr_ros.runtime.tracking import iou_matrix

MATCH_IOU = 0.5
# motmetrics' names, in the order printed.
METRICS = ("mota", "idf1", "idp", "idr", "num_switches", "num_fragmentations", "num_false_positives", "num_misses",
           "num_objects", "num_unique_objects", "mostly_tracked", "mostly_lost", "motp")


def tracking_metrics(videos):
    """Tracking metrics over videos, as one (motmetrics' overall figures).

    videos: list, per video, of frames in order, each (truth_ids [n], truth_boxes [n, 4],
    track_ids [m], track_boxes [m, 4]); boxes xyxy pixels; ids are per video.
    Returns {name: value} for METRICS (motp: mean 1 - IoU of the matches) plus
    "switches_per_100_objects": identity switches per 100 object-frames of ground truth.
    """
    import motmetrics

    accumulators = []
    for frames in videos:
        accumulator = motmetrics.MOTAccumulator(auto_id=True)
        for truth_ids, truth_boxes, track_ids, track_boxes in frames:
            iou = iou_matrix(truth_boxes, track_boxes)
            distances = np.where(iou >= MATCH_IOU, 1.0 - iou, np.nan)
            accumulator.update(np.asarray(truth_ids).tolist(), np.asarray(track_ids).tolist(), distances)
        accumulators.append(accumulator)
    summary = motmetrics.metrics.create().compute_many(accumulators, metrics=list(METRICS),
                                                       names=[str(i) for i in range(len(accumulators))],
                                                       generate_overall=True)
    result = {name: _plain(summary.loc["OVERALL", name]) for name in METRICS}
    result["switches_per_100_objects"] = 100.0 * result["num_switches"] / max(result["num_objects"], 1)
    return result


def _plain(value):
    """A motmetrics figure as a JSON-friendly int or float (NaN where undefined, e.g. MOTP without matches)."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, (int, np.integer)) else float(value)
