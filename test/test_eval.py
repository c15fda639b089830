"""COCO evaluation: our numbers are pycocotools' own; eval works on checkpoints and on exported ONNX models."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from detr_ros.cli import main as cli_main
from detr_ros.coco_metrics import SUMMARY_KEYS, coco_evaluate, load_coco_ground_truth
from detr_ros.modeling.build import build_model
from detr_ros.modeling.checkpoint import save_checkpoint
from detr_ros.modeling.config import ModelConfig
from detr_ros.synthetic import CATEGORY_IDS, CLASS_NAMES, SceneGenerator
from detr_ros.synthetic.dataset import write_dataset
from detr_ros.training.dataset import CocoDetection
from detr_ros.training.evaluate import predict_onnx, predict_pytorch
from detr_ros.training.transforms import resize_and_sanitize
from test_train import TINY_MODEL as TRAIN_TEST_MODEL

# The training tests' tiny RT-DETR, untrained (for the command's plumbing, not its numbers).
TINY_MODEL = {**TRAIN_TEST_MODEL, "name": "eval_tiny", "decoder_layers": 1, "num_denoising": 0}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval_synth")
    generator = SceneGenerator(128, 96, seed=21, max_objects=6)
    write_dataset(folder, (generator.image(i) for i in range(8)), 128, 96, "eval test")
    return folder


def _hand_built_detections(coco):
    """Perfect, shifted, mislabelled, missing and invented detections with spread-out scores."""
    rng = np.random.default_rng(0)
    detections = []
    for i, annotation in enumerate(coco["annotations"]):
        x, y, w, h = annotation["bbox"]
        kind = i % 5
        if kind == 4:
            continue  # missed
        if kind == 1:
            x, y = x + 0.3 * w, y + 0.2 * h  # poorly placed
        if kind == 2:
            w, h = w * 1.1, h * 0.9  # slightly off
        category = annotation["category_id"]
        if kind == 3:
            category = CATEGORY_IDS[(CATEGORY_IDS.index(category) + 1) % len(CATEGORY_IDS)]  # wrong class
        detections.append({"image_id": annotation["image_id"], "category_id": category, "bbox": [x, y, w, h],
                           "score": float(rng.uniform(0.3, 1.0))})
    for image in coco["images"]:
        detections.append({"image_id": image["id"], "category_id": int(rng.choice(CATEGORY_IDS)),
                           "bbox": [5.0, 5.0, 20.0, 15.0], "score": float(rng.uniform(0.0, 0.6))})
    return detections


def _pycocotools_reference(annotation_file, detections, category_ids=None):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotation_file))
        evaluator = COCOeval(gt, gt.loadRes(detections), "bbox")
        if category_ids is not None:
            evaluator.params.catIds = category_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def test_metrics_equal_pycocotools_own_numbers(dataset_dir):
    annotation_file = dataset_dir / "annotations.json"
    coco = json.loads(annotation_file.read_text())
    detections = _hand_built_detections(coco)
    metrics = coco_evaluate(load_coco_ground_truth(annotation_file), detections)
    reference = _pycocotools_reference(annotation_file, detections)
    assert [metrics[key] for key in SUMMARY_KEYS] == pytest.approx(list(reference[:6]), abs=1e-12)
    assert 0.05 < metrics["AP"] < 0.95  # neither trivial nor empty
    assert [row["category_id"] for row in metrics["per_class"]] == list(CATEGORY_IDS)
    assert [row["name"] for row in metrics["per_class"]] == list(CLASS_NAMES)
    for row in metrics["per_class"]:
        # One category alone: pycocotools' AP and AP50 for it are the per-class values.
        single = _pycocotools_reference(annotation_file, detections, [row["category_id"]])
        assert (row["AP"], row["AP50"]) == pytest.approx((single[0], single[1]), abs=1e-12), row["name"]


def test_perfect_detections_score_one_and_none_score_zero(dataset_dir):
    annotation_file = dataset_dir / "annotations.json"
    coco = json.loads(annotation_file.read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in coco["annotations"]]
    ground_truth = load_coco_ground_truth(annotation_file)
    assert coco_evaluate(ground_truth, perfect)["AP"] == pytest.approx(1.0)
    empty = coco_evaluate(ground_truth, [])
    assert empty["AP"] == 0.0 and empty["num_detections"] == 0 and len(empty["per_class"]) == len(CATEGORY_IDS)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = ModelConfig.from_dict(TINY_MODEL)
    path = tmp_path_factory.mktemp("eval_model") / "tiny.pt"
    save_checkpoint(path, model_config=config.to_dict(), state_dict=build_model(config).state_dict(),
                    class_names=list(CLASS_NAMES), category_ids=list(CATEGORY_IDS))
    return path


def test_eval_command_writes_the_json_report(dataset_dir, tiny_checkpoint, tmp_path, capsys):
    report = tmp_path / "metrics.json"
    assert cli_main(["eval", str(tiny_checkpoint), str(dataset_dir), "--json", str(report)]) == 0
    metrics = json.loads(report.read_text())
    assert set(SUMMARY_KEYS) <= set(metrics) and metrics["num_images"] == 8
    assert metrics["num_detections"] == 8 * TINY_MODEL["num_top_queries"]
    assert [row["category_id"] for row in metrics["per_class"]] == list(CATEGORY_IDS)
    assert "bullseye" in capsys.readouterr().out
    assert cli_main(["eval", str(tmp_path / "missing.pt"), str(dataset_dir)]) == 2
    assert "missing.pt: no such file" in capsys.readouterr().err


SHIPPED_CHECKPOINT = Path(__file__).resolve().parents[1] / "models" / "synthetic_rtdetr.pt"


def test_onnx_model_is_measured_like_its_checkpoint(tmp_path):
    """The shipped model (a trained one, so that its confident detections can be compared one by one),
    evaluated as a checkpoint and as its export, on scenes of its own input size: both paths then feed
    the network the same pixels (no resize), and what differs is float32 rounding."""
    from detr_ros.export.onnx_export import export
    from detr_ros.modeling.checkpoint import load_model

    model, checkpoint = load_model(SHIPPED_CHECKPOINT)
    config = ModelConfig.from_dict(checkpoint["model_config"])
    height, width = config.input_size
    generator = SceneGenerator(width, height, seed=21, max_objects=6)
    write_dataset(tmp_path / "scenes", (generator.image(i) for i in range(6)), width, height, "eval test")
    onnx_path = tmp_path / "shipped.onnx"
    export(SHIPPED_CHECKPOINT, onnx_path)
    dataset = CocoDetection.from_folder(tmp_path / "scenes", finish=resize_and_sanitize)
    from_torch = predict_pytorch(model, dataset, checkpoint["category_ids"], config.input_size,
                                 num_top_queries=config.num_top_queries)
    from_onnx = predict_onnx(onnx_path, dataset)
    # Float32 rounding (as the export check: 1e-4 in a score), plus the results' own rounding of
    # scores to 1e-5 and of x, y, width and height to 0.01 px; the runtime clips boxes to the image.
    confident = [r for r in from_torch if r["score"] > 0.3]
    assert len(confident) >= 8
    for expected in confident:
        x0, y0, box_width, box_height = expected["bbox"]
        x1, y1 = min(x0 + box_width, width), min(y0 + box_height, height)
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        clipped = [x0, y0, x1 - x0, y1 - y0]
        assert any(found["image_id"] == expected["image_id"] and found["category_id"] == expected["category_id"]
                   and abs(found["score"] - expected["score"]) <= 1e-4 + 1e-5
                   and np.abs(np.subtract(found["bbox"], clipped)).max() <= 0.01 + 0.02
                   for found in from_onnx), expected
    ground_truth = load_coco_ground_truth(tmp_path / "scenes" / "annotations.json")
    assert coco_evaluate(ground_truth, from_onnx)["AP"] == pytest.approx(coco_evaluate(ground_truth, from_torch)["AP"],
                                                                         abs=1e-3)
