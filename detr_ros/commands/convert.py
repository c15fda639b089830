"""``detr-ros convert SOURCE OUTPUT``: import a published checkpoint into a detr_ros checkpoint.

SOURCE is an official RT-DETR (v1/v2) or DETR ``.pth``, or a Hugging Face RT-DETR or DETR model
folder (or its weights file next to config.json); its kind is detected from its content unless
``--kind`` says it (see detr_ros.modeling.convert).
"""

from pathlib import Path

from detr_ros.modeling.convert import KINDS, convert


def add_arguments(parser):
    parser.add_argument("source", type=Path, help="checkpoint file or Hugging Face model folder")
    parser.add_argument("output", type=Path, help="detr_ros checkpoint to write (.pt)")
    parser.add_argument("--kind", choices=KINDS, help="source kind (default: detected)")
    parser.add_argument("--labels", type=Path, help="class names file (.yaml/.json list of {id, name}, or .txt)")
    parser.add_argument(
        "--config",
        type=Path,
        help="model YAML for settings official RT-DETR weights do not record (eval_idx, num_queries, "
        "input_size); the architecture itself is read from the weights",
    )


def run(args):
    result = convert(args.source, args.output, kind=args.kind, labels_path=args.labels, config_path=args.config)
    print(
        f"wrote {args.output}: {result['model_config']['name'] or result['kind']} "
        f"({result['kind']}, {len(result['class_names'])} classes, {result['num_parameters'] / 1e6:.1f}M parameters)"
    )
    return 0
