"""``detr-ros eval MODEL DATA [--json FILE]``: COCO mAP of a checkpoint or an ONNX model.

MODEL is a detr_ros checkpoint (run in PyTorch, post-processed as the exported graph
does it) or an ``.onnx`` file (run through ``detr_ros.runtime.Detector``, so the artifact
that ships is the one measured). DATA is a folder as ``detr-ros synth`` writes it.
The numbers are pycocotools' own: AP (IoU 0.50:0.95), AP50, AP75, APs, APm, APl, and a
per-class table of AP and AP50.
"""

import json
from pathlib import Path

import numpy as np
import torch

from detr_ros.coco_metrics import SUMMARY_KEYS, coco_evaluate, coco_results, load_coco_ground_truth
from detr_ros.errors import DatasetError, ModelFileError
from detr_ros.training.dataset import CocoDetection, SampleKey, collate
from detr_ros.training.transforms import resize_and_sanitize


@torch.no_grad()
def predict_pytorch(model, dataset, category_ids, input_size, *, num_top_queries, score_mode="sigmoid",
                    batch_size=8, device="cpu"):
    """COCO results of a PyTorch model over a CocoDetection (images stretched to input_size [H, W])."""
    from detr_ros.modeling.postprocess import postprocess

    model.eval()
    results = []
    keys = [SampleKey(i, 0, tuple(input_size)) for i in range(len(dataset))]
    for start in range(0, len(keys), batch_size):
        images, targets = collate([dataset[key] for key in keys[start:start + batch_size]])
        outputs = model(images.to(device))
        sizes = torch.stack([t["orig_size"] for t in targets]).to(device)
        labels, boxes, scores = postprocess(outputs["pred_logits"], outputs["pred_boxes"], sizes,
                                            num_top_queries=num_top_queries, score_mode=score_mode)
        for image_labels, image_boxes, image_scores, target in zip(labels.cpu(), boxes.cpu(), scores.cpu(), targets):
            results += coco_results(target["image_id"], image_boxes, image_scores, image_labels, category_ids)
    return results


def evaluate_pytorch(model, model_config, category_ids, data_dir, *, batch_size=8, device="cpu"):
    """COCO metrics of a PyTorch model (see coco_evaluate) on a dataset folder."""
    dataset = CocoDetection.from_folder(data_dir, finish=resize_and_sanitize)
    results = predict_pytorch(model, dataset, category_ids, model_config.input_size,
                              num_top_queries=model_config.num_top_queries,
                              score_mode="sigmoid" if model_config.architecture == "rtdetr" else "softmax",
                              batch_size=batch_size, device=device)
    return coco_evaluate(load_coco_ground_truth(dataset.annotation_file), results)


def predict_onnx(model_path, dataset, *, threads=None):
    """COCO results of an ONNX model run through the runtime Detector over a CocoDetection, every detection kept."""
    from detr_ros.runtime import Detector

    # The model's own answers, as the checkpoint's evaluation sees them: no duplicate suppression.
    detector = Detector(model_path, threads=threads, score_threshold=0.0, max_detections=1000, duplicate_iou=1.0)
    results = []
    for index, entry in enumerate(dataset.images):
        rgb = np.ascontiguousarray(dataset.read_image(index).permute(1, 2, 0).numpy())
        found = detector.detect(rgb, color_order="rgb")
        results += coco_results(entry["id"], found.boxes, found.scores, found.class_ids, detector.category_ids)
    return results


def evaluate_onnx(model_path, data_dir, *, threads=None):
    """COCO metrics of an ONNX model (see coco_evaluate) on a dataset folder."""
    dataset = CocoDetection.from_folder(data_dir)
    return coco_evaluate(load_coco_ground_truth(dataset.annotation_file), predict_onnx(model_path, dataset, threads=threads))


def print_metrics(metrics, title):
    print(title)
    print("  " + "  ".join(f"{key} {metrics[key]:.3f}" for key in SUMMARY_KEYS))
    width = max([len(c["name"]) for c in metrics["per_class"]] + [5])
    print(f"  {'class':<{width}}  {'id':>4}  {'AP':>6}  {'AP50':>6}")
    for row in metrics["per_class"]:
        print(f"  {row['name']:<{width}}  {row['category_id']:>4}  {row['AP']:>6.3f}  {row['AP50']:>6.3f}")


def add_arguments(parser):
    parser.add_argument("model", help="detr_ros checkpoint (.pt) or ONNX model (.onnx)")
    parser.add_argument("data", help="dataset folder: annotations.json and images/")
    parser.add_argument("--json", metavar="FILE", help="also write the metrics as JSON to FILE")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (checkpoints)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: PyTorch/ONNX Runtime's choice)")


def run(args):
    model_path, data_dir = Path(args.model), Path(args.data)
    if not model_path.is_file():
        raise ModelFileError(f"{model_path}: no such file")
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: no such dataset folder (expected annotations.json and images/)")
    if model_path.suffix == ".onnx":
        metrics = evaluate_onnx(model_path, data_dir, threads=args.threads)
    else:
        from detr_ros.modeling.checkpoint import load_model, model_config_from_checkpoint

        if args.threads:
            torch.set_num_threads(args.threads)
        model, checkpoint = load_model(model_path)
        metrics = evaluate_pytorch(model, model_config_from_checkpoint(checkpoint, model_path),
                                   checkpoint["category_ids"], data_dir, batch_size=args.batch_size)
    print_metrics(metrics, f"{model_path} on {data_dir} ({metrics['num_images']} images)")
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in metrics.items() if k != "summary"}, indent=2))
    return 0
