"""``detr-ros detect MODEL INPUT...``: a model on images, folders, videos and rosbag2 recordings.

MODEL is an ONNX file (run through the runtime, no torch) or a detr_ros checkpoint (``.pt``/``.pth``,
run in PyTorch through the same detection path as its export). Each input is an image, a folder of
images, a video file, or a rosbag2 recording (its folder, or the ``.db3``/``.mcap`` file in it), of
which every sensor_msgs/Image and CompressedImage topic is read (or ``--topic``). Written to
``--out``: each image annotated under its own name, each video and bag topic as an annotated MP4,
``images.json`` (COCO "images": which picture each id is) and the detections as a COCO results
list (``--json``, default ``OUT/detections.json``) with the model's dataset category ids. With
``--tracking``, objects in videos and bag topics are tracked (the node's tracker): boxes are
labelled with their track ids and each result carries ``track_id``.
"""

import sys
from pathlib import Path

from detr_ros.commands.model_options import add_format_arguments, format_options
from detr_ros.runtime.detections import DEFAULT_DUPLICATE_IOU, DEFAULT_SCORE_THRESHOLD
from detr_ros.tools.detect import detect_files

DEFAULT_OUT = Path("out") / "detect"


def add_arguments(parser):
    parser.add_argument("model", type=Path, help="ONNX model, or detr_ros PyTorch checkpoint (.pt)")
    parser.add_argument("inputs", type=Path, nargs="+", metavar="INPUT",
                        help="image, folder of images, video file, or rosbag2 recording (sqlite3 or MCAP)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--json", type=Path, default=None,
                        help="COCO results file for the detections (default OUT/detections.json)")
    parser.add_argument("--topic", action="append", default=None,
                        help="rosbag2 image topic to read (repeatable; default: every image topic)")
    parser.add_argument("--score-threshold", type=float, default=DEFAULT_SCORE_THRESHOLD,
                        help=f"lowest score kept (default {DEFAULT_SCORE_THRESHOLD})")
    parser.add_argument("--duplicate-iou", type=float, default=DEFAULT_DUPLICATE_IOU,
                        help="of two same-class boxes overlapping more than this, keep the better one; 1.0 keeps "
                             f"both (default {DEFAULT_DUPLICATE_IOU})")
    parser.add_argument("--tracking", action="store_true",
                        help="track objects through videos and bag topics; results carry track_id")
    add_format_arguments(parser)


def run(args):
    written = detect_files(args.model, args.inputs, args.out, json_path=args.json, topics=args.topic,
                           score_threshold=args.score_threshold, duplicate_iou=args.duplicate_iou,
                           tracking=args.tracking, format_options=format_options(args))
    print(f"wrote {written['detections']} detections of {written['images']} images to {written['json']} "
          f"(COCO results; image ids in {written['images_json']})")
    if written["skipped"]:
        print(f"detr-ros detect: {len(written['skipped'])} unreadable image(s) skipped: "
              f"{', '.join(map(str, written['skipped']))}", file=sys.stderr)
        return 1
    return 0
