"""``detr-ros synth --video`` writes identities and ``detr-ros eval --tracking`` scores the shipped model and
the node's tracker on them with motmetrics and trackeval."""

import json
from pathlib import Path

import numpy as np
import pytest

from detr_ros.cli import main as cli_main
from detr_ros.tracking_metrics import tracking_metrics

SHIPPED_MODEL = Path(__file__).resolve().parents[1] / "models" / "synthetic_rtdetr.onnx"


def test_a_synthetic_video_dataset_carries_identities_and_stamps(tmp_path):
    assert cli_main(["synth", str(tmp_path), "--video", "30", "--traffic", "--rate", "20", "--size", "160x120",
                     "--seed", "5"]) == 0
    coco = json.loads((tmp_path / "annotations.json").read_text())
    assert [image["frame_index"] for image in coco["images"]] == list(range(30))
    assert coco["images"][3]["stamp_ns"] == 150_000_000
    ids_per_image = {}
    for annotation in coco["annotations"]:
        ids_per_image.setdefault(annotation["image_id"], []).append(annotation["track_id"])
    assert all(len(ids) == len(set(ids)) for ids in ids_per_image.values()), "one object, one id per frame"
    assert all(track_id > 0 for ids in ids_per_image.values() for track_id in ids)


def test_tracking_metrics_count_an_identity_swap():
    box_a, box_b = [0, 0, 10, 10], [50, 50, 60, 60]
    frames = [([1, 2], np.array([box_a, box_b]), [7, 8], np.array([box_a, box_b]))] * 3
    swapped = [([1, 2], np.array([box_a, box_b]), [8, 7], np.array([box_a, box_b]))] * 3
    perfect, swap = tracking_metrics([frames]), tracking_metrics([frames + swapped])
    assert perfect["mota"] == 1.0 and perfect["idf1"] == 1.0 and perfect["num_switches"] == 0
    assert swap["num_switches"] == 2 and swap["idf1"] == 0.5 and swap["switches_per_100_objects"] == 100 * 2 / 12
    # HOTA: every detection found (DetA 1); each object shares its frames between two tracks, 3 of 6 each (AssA
    # 3 / (3 + 3 + 3)).
    assert perfect["hota"] == perfect["deta"] == perfect["assa"] == 1.0
    assert swap["deta"] == 1.0 and swap["assa"] == pytest.approx(1 / 3)
    assert swap["hota"] == pytest.approx((1 / 3) ** 0.5)


def test_eval_tracking_prints_and_writes_mota_idf1_and_id_switches(tmp_path, capsys):
    data = tmp_path / "video"
    assert cli_main(["synth", str(data), "--video", "40", "--traffic", "--seed", "8"]) == 0
    capsys.readouterr()
    assert cli_main(["eval", str(SHIPPED_MODEL), str(data), "--tracking", "--json", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert "MOTA" in printed and "IDF1" in printed and "ID switches" in printed and "HOTA" in printed
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["num_frames"] == 40
    # The shipped model tracks most of the objects of a held-out video (the benchmark measures how well).
    assert metrics["idf1"] > 0.7 and metrics["mota"] > 0.7 and metrics["hota"] > 0.6
