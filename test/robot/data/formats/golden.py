"""What every make_<upstream>.py writes beside its model: the upstream's detections, as JSON.

Imported by the make scripts (each runs in its upstream's own environment, so this module needs
only numpy and the standard library).
"""

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def threshold_in_a_gap(scores, rank=40, gap=2e-4):
    """A score threshold between two neighbouring scores at least ``gap`` apart, nearest ``rank``.

    Scores that differ by float rounding then fall on the same side of it in every run."""
    ordered = np.sort(np.asarray(scores, np.float64))[::-1]
    for index in sorted(range(1, len(ordered)), key=lambda i: abs(i - rank)):
        if ordered[index - 1] - ordered[index] >= gap:
            return float((ordered[index - 1] + ordered[index]) / 2)
    raise SystemExit("no gap between scores to put a threshold in")


def write(name, image, made_by, description, threshold, boxes, scores, class_ids):
    """<name>.json: boxes [n,4] xyxy source pixels, scores [n], class_ids [n], as upstream returned them."""
    record = {
        "model": f"{name}.onnx",
        "image": image.name,
        "made_by": made_by,
        "description": description,
        "score_threshold": threshold,
        "boxes": np.asarray(boxes, np.float64).round(4).tolist(),
        "scores": np.asarray(scores, np.float64).round(7).tolist(),
        "class_ids": np.asarray(class_ids).astype(int).tolist(),
    }
    (HERE / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{name}: {len(record['scores'])} detections above {threshold:.6f}")
