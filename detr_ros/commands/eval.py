"""``detr-ros eval MODEL DATA [--json FILE]``: COCO mAP of a checkpoint or an ONNX model.

MODEL is a detr_ros checkpoint (run in PyTorch, post-processed as the exported graph does it) or
an ``.onnx`` file (run through ``detr_ros.runtime.Detector``, so the artifact that ships is the one
measured). DATA is a folder as ``detr-ros synth`` writes it. Prints pycocotools' AP, AP50, AP75,
APs, APm, APl and a per-class table of AP and AP50.
"""

import json
from pathlib import Path

from detr_ros.coco_metrics import SUMMARY_KEYS
from detr_ros.training.evaluate import evaluate


def add_arguments(parser):
    parser.add_argument("model", help="detr_ros checkpoint (.pt) or ONNX model (.onnx)")
    parser.add_argument("data", help="dataset folder: annotations.json and images/")
    parser.add_argument("--json", metavar="FILE", help="also write the metrics as JSON to FILE")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (checkpoints)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: PyTorch/ONNX Runtime's choice)")


def format_metrics(metrics, title):
    """The summary line and per-class table of coco_evaluate's metrics, under ``title``."""
    width = max([len(c["name"]) for c in metrics["per_class"]] + [5])
    lines = [title, "  " + "  ".join(f"{key} {metrics[key]:.3f}" for key in SUMMARY_KEYS),
             f"  {'class':<{width}}  {'id':>4}  {'AP':>6}  {'AP50':>6}"]
    lines += [f"  {row['name']:<{width}}  {row['category_id']:>4}  {row['AP']:>6.3f}  {row['AP50']:>6.3f}"
              for row in metrics["per_class"]]
    return "\n".join(lines)


def run(args):
    metrics = evaluate(args.model, args.data, batch_size=args.batch_size, threads=args.threads)
    print(format_metrics(metrics, f"{args.model} on {args.data} ({metrics['num_images']} images)"))
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in metrics.items() if k != "summary"}, indent=2))
    return 0
