"""COCO mAP of a checkpoint or an ONNX model on a dataset folder as ``detr-ros synth`` writes it.

A detr_ros checkpoint runs in PyTorch, post-processed as the exported graph does it; an ``.onnx``
file runs through ``detr_ros.runtime.Detector``, so the artifact that ships is the one measured.
The numbers are pycocotools' own: AP (IoU 0.50:0.95), AP50, AP75, APs, APm, APl, and a per-class
table of AP and AP50.
"""

from pathlib import Path

import numpy as np
import torch

from detr_ros.coco_metrics import coco_evaluate, coco_results, load_coco_ground_truth
from detr_ros.errors import ConfigError, DatasetError, ModelFileError
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


def predict_onnx(model_path, dataset, *, threads=None, format_options=None):
    """COCO results of an ONNX model run through the runtime Detector over a CocoDetection, every detection kept.

    format_options: Detector keyword arguments for reading a foreign file (model_format, resize_mode, normalization)."""
    from detr_ros.runtime import Detector

    # The model's own answers, as the checkpoint's evaluation sees them: no duplicate suppression.
    detector = Detector(model_path, threads=threads, score_threshold=0.0, max_detections=1000, duplicate_iou=1.0,
                        **(format_options or {}))
    results = []
    for index, entry in enumerate(dataset.images):
        rgb = np.ascontiguousarray(dataset.read_image(index).permute(1, 2, 0).numpy())
        found = detector.detect(rgb, color_order="rgb")
        results += coco_results(entry["id"], found.boxes, found.scores, found.class_ids, detector.category_ids)
    return results


def evaluate_onnx(model_path, data_dir, *, threads=None, format_options=None):
    """COCO metrics of an ONNX model (see coco_evaluate) on a dataset folder."""
    dataset = CocoDetection.from_folder(data_dir)
    return coco_evaluate(load_coco_ground_truth(dataset.annotation_file), predict_onnx(model_path, dataset, threads=threads,
                                                                                         format_options=format_options))


def evaluate(model_path, data_dir, *, batch_size=8, threads=None, format_options=None):
    """COCO metrics (see coco_evaluate) of a checkpoint or an ``.onnx`` model on a dataset folder.

    batch_size: images per forward pass of a checkpoint; threads: CPU threads (None: the library's choice);
    format_options: Detector keyword arguments for reading a foreign ONNX file (see predict_onnx).
    """
    model_path, data_dir = Path(model_path), Path(data_dir)
    if not model_path.is_file():
        raise ModelFileError(f"{model_path}: no such file")
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: no such dataset folder (expected annotations.json and images/)")
    if model_path.suffix == ".onnx":
        return evaluate_onnx(model_path, data_dir, threads=threads, format_options=format_options)
    if format_options:
        raise ConfigError(f"{', '.join(sorted(format_options))}: for ONNX files only; {model_path} is a checkpoint")
    from detr_ros.modeling.checkpoint import load_model, model_config_from_checkpoint

    if threads:
        torch.set_num_threads(threads)
    model, checkpoint = load_model(model_path)
    return evaluate_pytorch(model, model_config_from_checkpoint(checkpoint, model_path), checkpoint["category_ids"],
                            data_dir, batch_size=batch_size)
