"""``detr-ros explain CHECKPOINT IMAGE``: where the model looked, for one image, as PNG files.

DETR: the last encoder layer's self-attention from chosen points (``--points``, default the
centres of the detections) and the last decoder layer's cross-attention of each selected
detection's query. RT-DETR: for each selected detection, the deformable cross-attention's
sampling points per feature level. The selected detections are the queries with the highest
class score (at most ``--detections``, above ``--score-threshold``); see detr_ros.tools.explain.
"""

from pathlib import Path

from detr_ros.errors import ConfigError
from detr_ros.tools.explain import explain

DEFAULT_OUT = Path("out") / "explain"


def add_arguments(parser):
    parser.add_argument("checkpoint", type=Path, help="detr_ros checkpoint (.pt) of a DETR or RT-DETR model")
    parser.add_argument("image", type=Path, help="the image to explain")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--detections", type=int, default=3, help="how many detections to explain (default 3)")
    parser.add_argument("--score-threshold", type=float, default=0.0,
                        help="explain only detections scoring at least this (default 0: the best ones whatever "
                             "their score)")
    parser.add_argument("--points", nargs="+", default=None, metavar="X,Y",
                        help="DETR: image pixels whose encoder self-attention to draw (default: detection centres)")


def point(text):
    """'X,Y' image pixels -> (x, y)."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--points {text!r}: expected X,Y in image pixels, e.g. 120,80") from None
    return x, y


def run(args):
    points = [point(text) for text in args.points] if args.points else None
    written = explain(args.checkpoint, args.image, args.out, detections=args.detections,
                      score_threshold=args.score_threshold, points=points)
    if not written:
        print(f"no detection scored {args.score_threshold} or more; nothing to draw")
        return 1
    for path in written:
        print(f"wrote {path}")
    return 0
