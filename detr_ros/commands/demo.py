"""``detr-ros demo``: camera -> detector -> recorder as separate ROS 2 processes, summarised in a folder.

With the synthetic camera the detections are scored against its ground truth (AP50); with
``--camera-topic`` the detector and recorder join the ROS environment as it is to hear that camera.
``--out`` receives annotated.mp4, contact_sheet.png, recording.json, summary.json and logs/
(see detr_ros.tools.demo).
"""

from pathlib import Path

from detr_ros.tools.demo import DEFAULT_SECONDS, run_demo

DEFAULT_OUT = Path("out") / "demo"
QUICK_SECONDS = 8.0


def add_arguments(parser):
    parser.add_argument("--model", type=Path, default=None,
                        help="ONNX model for the detector (default: the shipped models/synthetic_rtdetr.onnx)")
    parser.add_argument("--camera-topic", default=None, metavar="TOPIC",
                        help="run on this real camera topic (sensor_msgs/Image, or CompressedImage when it ends in "
                             "/compressed) instead of the synthetic camera; no ground truth, so no AP50")
    parser.add_argument("--seconds", type=float, default=None,
                        help=f"recording time (default {DEFAULT_SECONDS:g}, {QUICK_SECONDS:g} with --quick)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--quick", action="store_true", help="a shortened run, for tests and a first look")


def run(args):
    seconds = args.seconds if args.seconds is not None else (QUICK_SECONDS if args.quick else DEFAULT_SECONDS)
    run_demo(args.out, model=args.model, camera_topic=args.camera_topic, seconds=seconds)
    return 0
