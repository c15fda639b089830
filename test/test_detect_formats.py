"""``detr-ros detect`` runs every upstream format end to end: each committed upstream export, on the
committed scene, with the options its user must give, writes the detections that upstream's own
inference code found (the golden files of test/robot/test_formats.py)."""

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from detr_ros.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parent / "robot"))
from test_formats import BOX_TOLERANCE_PX, DATA, GOLDEN, SCORE_TOLERANCE, golden  # noqa: E402

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
    free = list(results)
    height, width = cv2.imread(str(DATA / record["image"])).shape[:2]
    expected_boxes = np.clip(record["boxes"], 0, [width, height, width, height])
    for box, score, class_id in zip(expected_boxes, record["scores"], record["class_ids"]):
        # foreign files carry no category ids: the class index stands for one
        partner = next((r for r in free if r["category_id"] == class_id
                        and abs(r["score"] - score) <= RESULTS_SCORE_TOLERANCE
                        and np.abs(np.subtract([r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2],
                                                r["bbox"][1] + r["bbox"][3]], box)).max() <= RESULTS_BOX_TOLERANCE),
                       None)
        assert partner is not None, (class_id, score, box)
        free.remove(partner)
