"""The ``detr-ros`` command: one entry point for the offline tools.

Each verb's command line is a module of ``detr_ros.commands``, imported only when that verb runs,
so that ``detr-ros --help`` and the runtime-only verbs work without torch installed.
A verb module provides ``add_arguments(parser)`` and ``run(args) -> int``.
"""

import argparse
import importlib
import sys

from detr_ros.errors import DetrRosError

# verb -> one-line help; the verb's command line is the module detr_ros.commands.<verb>
VERBS = {
    "synth": "generate a synthetic COCO-format dataset or video",
    "train": "train or fine-tune a model on COCO-format data",
    "eval": "COCO mAP of a checkpoint or ONNX model on a dataset",
    "convert": "import an official or Hugging Face checkpoint",
    "export": "export a checkpoint to ONNX (optionally INT8)",
    "bench": "latency of an ONNX model through the runtime",
    "detect": "run a model on images, a video or a rosbag2 recording",
    "explain": "draw attention and sampling points for one image",
    "demo": "run camera -> detector -> recorder and summarise",
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="detr-ros",
        description="Offline tools of detr_ros: data, training, evaluation, export, benchmarks.",
    )
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, help_text in VERBS.items():
        # The verb's own parser (built in main) answers -h with its arguments.
        subparsers.add_parser(verb, help=help_text, add_help=False)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    # Parse once to find the verb, then let that verb's module add its own arguments.
    known, _ = parser.parse_known_args(argv)
    if known.verb is None:
        parser.print_help()
        return 0 if not argv else 2
    module = importlib.import_module(f"detr_ros.commands.{known.verb}")
    sub = argparse.ArgumentParser(prog=f"detr-ros {known.verb}", description=VERBS[known.verb])
    module.add_arguments(sub)
    args = sub.parse_args(argv[1:])
    try:
        return module.run(args) or 0
    except DetrRosError as error:
        print(f"detr-ros {known.verb}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
