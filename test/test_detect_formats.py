"""``detr-ros detect`` runs every upstream format end to end: each committed upstream export, on the
committed scene, with the options its user must give, writes the detections that upstream's own
inference code found (the golden files of test/robot/test_formats.py)."""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from detr_ros.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent / "robot"))
from test_formats import BOX_TOLERANCE_PX, DATA, GOLDEN, SCORE_TOLERANCE, golden, unmatched  # noqa: E402

# The COCO results file rounds x, y, width and height to 0.01 px (so x + width carries two half-units)
# and scores to 1e-5 (half a unit).
RESULTS_BOX_TOLERANCE = BOX_TOLERANCE_PX + 0.01
RESULTS_SCORE_TOLERANCE = SCORE_TOLERANCE + 0.5e-5
OPTIONS = {"normalization": "--normalization"}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_detect_writes_the_upstreams_detections(name, tmp_path):
    record = golden(name)
    _, options = GOLDEN[name]
    arguments = [argument for option, value in options.items() for argument in (OPTIONS[option], value)]
    assert main(["detect", str(DATA / f"{name}.onnx"), str(DATA / record["image"]), "--out", str(tmp_path),
                 "--score-threshold", str(record["score_threshold"]), "--duplicate-iou", "1.0", *arguments]) == 0
    results = json.loads((tmp_path / "detections.json").read_text())
    assert len(results) == len(record["scores"])
    # foreign files carry no category ids: the class index stands for one
    written = SimpleNamespace(
        boxes=np.array([[x, y, x + width, y + height] for x, y, width, height in (r["bbox"] for r in results)]),
        scores=np.array([r["score"] for r in results]), class_ids=np.array([r["category_id"] for r in results]))
    assert not unmatched(record, written, RESULTS_SCORE_TOLERANCE, RESULTS_BOX_TOLERANCE)
