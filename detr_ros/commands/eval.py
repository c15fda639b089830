"""``detr-ros eval MODEL DATA [--json FILE] [--tracking]``: COCO mAP, or tracking metrics, of a model.

MODEL is a detr_ros checkpoint (run in PyTorch, post-processed as the exported graph does it) or
an ``.onnx`` file (run through ``detr_ros.runtime.Detector``, so the artifact that ships is the one
measured). DATA is a folder as ``detr-ros synth`` writes it. Prints pycocotools' AP, AP50, AP75,
APs, APm, APl and a per-class table of AP and AP50; with ``--tracking`` (DATA a video from
``detr-ros synth --video``), the model and the node's tracker's MOTA, IDF1 and identity switches
(motmetrics) and HOTA with its detection and association parts (trackeval).
"""

import json
from pathlib import Path

from detr_ros.coco_metrics import SUMMARY_KEYS
from detr_ros.commands.model_options import add_format_arguments, format_options
from detr_ros.runtime.detections import DEFAULT_SCORE_THRESHOLD


def add_arguments(parser):
    parser.add_argument("model", help="detr_ros checkpoint (.pt) or ONNX model (.onnx)")
    parser.add_argument("data", help="dataset folder: annotations.json and images/")
    parser.add_argument("--json", metavar="FILE", help="also write the metrics as JSON to FILE")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (checkpoints)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: PyTorch/ONNX Runtime's choice)")
    add_format_arguments(parser)
    parser.add_argument("--tracking", action="store_true",
                        help="tracking metrics (MOTA, IDF1, ID switches) on a video dataset with track ids")
    parser.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD,
                        help=f"--tracking: the published threshold (default {DEFAULT_SCORE_THRESHOLD})")


def format_metrics(metrics, title):
    """The summary line and per-class table of coco_evaluate's metrics, under ``title``."""
    width = max([len(c["name"]) for c in metrics["per_class"]] + [5])
    lines = [title, "  " + "  ".join(f"{key} {metrics[key]:.3f}" for key in SUMMARY_KEYS),
             f"  {'class':<{width}}  {'id':>4}  {'AP':>6}  {'AP50':>6}"]
    lines += [f"  {row['name']:<{width}}  {row['category_id']:>4}  {row['AP']:>6.3f}  {row['AP50']:>6.3f}"
              for row in metrics["per_class"]]
    return "\n".join(lines)


def format_tracking_metrics(metrics, title):
    """The tracking metrics as printed lines under ``title``."""
    return "\n".join([
        title,
        f"  MOTA {metrics['mota']:.3f}  IDF1 {metrics['idf1']:.3f}  (IDP {metrics['idp']:.3f}, IDR {metrics['idr']:.3f})"
        f"  MOTP(1-IoU) {metrics['motp']:.3f}",
        f"  HOTA {metrics['hota']:.3f}  (DetA {metrics['deta']:.3f}, AssA {metrics['assa']:.3f})",
        f"  ID switches {metrics['num_switches']} ({metrics['switches_per_100_objects']:.2f} per 100 object-frames), "
        f"fragmentations {metrics['num_fragmentations']}",
        f"  false positives {metrics['num_false_positives']}, misses {metrics['num_misses']} of "
        f"{metrics['num_objects']} object-frames; objects {metrics['num_unique_objects']}: "
        f"{metrics['mostly_tracked']} mostly tracked, {metrics['mostly_lost']} mostly lost",
    ])


def run(args):
    if args.tracking:
        from detr_ros.training.evaluate_tracking import evaluate_tracking

        metrics = evaluate_tracking(args.model, args.data, score_threshold=args.score_threshold)
        print(format_tracking_metrics(metrics, f"{args.model} + tracker on {args.data} ({metrics['num_videos']} "
                                               f"video(s), {metrics['num_frames']} frames)"))
    else:
        from detr_ros.training.evaluate import evaluate

        metrics = evaluate(args.model, args.data, batch_size=args.batch_size, threads=args.threads,
                           format_options=format_options(args))
        print(format_metrics(metrics, f"{args.model} on {args.data} ({metrics['num_images']} images)"))
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in metrics.items() if k != "summary"}, indent=2))
    return 0
