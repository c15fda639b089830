"""``detr-ros bench MODEL.onnx [--compare OTHER.onnx]``: latency of ONNX models through the runtime.

A model the runtime knows is timed per stage (pre-processing, inference, post-processing) on
synthetic camera frames; any other graph is fed random inputs of its declared shapes and timed
for inference alone. With --compare the two models alternate within the run and ``ratio`` is
MODEL's median inference latency over OTHER's; --profile N adds kernel time by operator type
(see detr_ros.tools.bench). No torch here: this runs on the robot too.
"""

import json
from pathlib import Path

from detr_ros.commands.model_options import add_format_arguments, format_options
from detr_ros.runtime.metadata import parse_size
from detr_ros.tools.bench import benchmark, format_table


def add_arguments(parser):
    parser.add_argument("model", type=Path, help="ONNX model to time")
    parser.add_argument("--compare", type=Path, help="another ONNX graph, timed in alternation with MODEL")
    parser.add_argument("--providers", default="cpu", help="ordered execution providers, e.g. tensorrt,cuda,cpu")
    parser.add_argument("--batch", type=int, default=1, help="images per call")
    parser.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: onnxruntime's)")
    parser.add_argument("--iterations", type=int, default=50, help="timed calls per model")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per model first")
    parser.add_argument("--frame-size", default="720x1280", help="source frames HxW fed to known models")
    parser.add_argument("--input-size", help="HxW for graphs with a dynamic image size and no metadata")
    parser.add_argument("--profile", type=int, default=0, metavar="RUNS",
                        help="also profile RUNS runs a model: kernel time by operator type (default: off)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    add_format_arguments(parser)


def run(args):
    report = benchmark(args.model, compare=args.compare, providers=args.providers, batch=args.batch,
                       threads=args.threads, iterations=args.iterations, warmup=args.warmup,
                       frame_size=parse_size(args.frame_size),
                       input_size=parse_size(args.input_size) if args.input_size else None, profile=args.profile,
                       format_options=format_options(args))
    print(format_table(report))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
