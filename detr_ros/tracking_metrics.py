"""Multi-object tracking metrics: MOTA, IDF1, identity switches and their parts with motmetrics; HOTA
and its detection and association parts with trackeval.

numpy, motmetrics and trackeval only (no torch). For motmetrics a ground-truth object and a track
match when their boxes overlap by IoU >= 0.5 (the MOTChallenge rule); HOTA averages over IoU
thresholds from 0.05 to 0.95, as defined. Classes play no part, so a class mistake costs detection
metrics (``detr-ros eval``), not tracking ones.
"""

import numpy as np

from detr_ros.runtime.detections import iou_matrix

MATCH_IOU = 0.5
# motmetrics' names, in the order printed.
METRICS = ("mota", "idf1", "idp", "idr", "num_switches", "num_fragmentations", "num_false_positives", "num_misses",
           "num_objects", "num_unique_objects", "mostly_tracked", "mostly_lost", "motp")


def tracking_metrics(videos):
    """Tracking metrics over videos, as one (motmetrics' overall figures, and trackeval's HOTA).

    videos: list, per video, of frames in order, each (truth_ids [n], truth_boxes [n, 4],
    track_ids [m], track_boxes [m, 4]); boxes xyxy pixels; ids are per video.
    Returns {name: value} for METRICS (motp: mean 1 - IoU of the matches) plus
    "switches_per_100_objects": identity switches per 100 object-frames of ground truth, and "hota",
    "deta", "assa" (hota).
    """
    import motmetrics

    # Per video, frames of (truth ids, track ids, their IoU [n, m]): what both libraries score.
    scored = [[(np.asarray(truth).tolist(), np.asarray(tracks).tolist(), iou_matrix(truth_boxes, track_boxes))
               for truth, truth_boxes, tracks, track_boxes in frames] for frames in videos]
    accumulators = []
    for frames in scored:
        accumulator = motmetrics.MOTAccumulator(auto_id=True)
        for truth_ids, track_ids, iou in frames:
            accumulator.update(truth_ids, track_ids, np.where(iou >= MATCH_IOU, 1.0 - iou, np.nan))
        accumulators.append(accumulator)
    summary = motmetrics.metrics.create().compute_many(accumulators, metrics=list(METRICS),
                                                       names=[str(i) for i in range(len(accumulators))],
                                                       generate_overall=True)
    result = {name: _plain(summary.loc["OVERALL", name]) for name in METRICS}
    result["switches_per_100_objects"] = 100.0 * result["num_switches"] / max(result["num_objects"], 1)
    result.update(hota(scored))
    return result


def hota(videos):
    """{"hota", "deta", "assa"}: trackeval's HOTA, detection and association accuracy over ``videos``
    combined as one, each averaged over HOTA's IoU thresholds. videos: per video, frames of (truth_ids
    [n], track_ids [m], IoU [n, m])."""
    from trackeval.metrics import HOTA

    metric = HOTA()
    per_video = {str(index): metric.eval_sequence(_trackeval_sequence(frames)) for index, frames in enumerate(videos)}
    combined = metric.combine_sequences(per_video)
    return {"hota": float(np.mean(combined["HOTA"])), "deta": float(np.mean(combined["DetA"])),
            "assa": float(np.mean(combined["AssA"]))}


def _trackeval_sequence(frames):
    """One video's frames as trackeval's sequence data: ids renumbered from 0, IoU as the similarity."""
    truth_index, track_index = {}, {}

    def renumbered(ids, index):
        return np.array([index.setdefault(i, len(index)) for i in ids], np.int64)

    truth_ids = [renumbered(truth, truth_index) for truth, _, _ in frames]
    track_ids = [renumbered(tracks, track_index) for _, tracks, _ in frames]
    return {"num_gt_dets": sum(len(ids) for ids in truth_ids), "num_tracker_dets": sum(len(ids) for ids in track_ids),
            "num_gt_ids": len(truth_index), "num_tracker_ids": len(track_index), "gt_ids": truth_ids,
            "tracker_ids": track_ids, "similarity_scores": [iou for _, _, iou in frames]}


def _plain(value):
    """A motmetrics figure as a JSON-friendly int or float (NaN where undefined, e.g. MOTP without matches)."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, (int, np.integer)) else float(value)
