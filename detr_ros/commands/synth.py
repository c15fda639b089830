"""``detr-ros synth OUT --images N --seed S [--size WxH] [--video FRAMES [--traffic] [--rate HZ]]``: a
synthetic COCO dataset.

Writes ``OUT/annotations.json`` and ``OUT/images/``. With ``--images`` the pictures are independent
still scenes; with ``--video`` they are consecutive frames of one synthetic video, each object with
its ``track_id`` (for ``detr-ros eval --tracking``); ``--traffic`` makes objects cross the picture and
leave while others come in. A held-out split is the same command with another ``--seed``.
"""

from detr_ros.errors import ConfigError
from detr_ros.synthetic import CLASSES
from detr_ros.synthetic.dataset import DEFAULT_VIDEO_RATE_HZ, synthesize


def add_arguments(parser):
    parser.add_argument("out", help="output folder (created): annotations.json and images/")
    parser.add_argument("--images", type=int, help="number of independent still scenes")
    parser.add_argument("--video", type=int, metavar="FRAMES", help="number of consecutive video frames instead")
    parser.add_argument("--traffic", action="store_true",
                        help="video: objects cross the picture and leave, others come in")
    parser.add_argument("--rate", type=float, default=DEFAULT_VIDEO_RATE_HZ,
                        help=f"video: frames per second of the frames' stamps (default {DEFAULT_VIDEO_RATE_HZ:g})")
    parser.add_argument("--seed", type=int, default=0, help="random seed; use another seed for a held-out split")
    parser.add_argument("--size", default="320x320", help="image size WIDTHxHEIGHT (default 320x320)")


def image_size(text):
    """'WxH' -> (width, height)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size: expected WIDTHxHEIGHT like 320x320, got {text!r}") from None
    return width, height


def run(args):
    width, height = image_size(args.size)
    if (args.images is None) == (args.video is None):
        raise ConfigError("give exactly one of --images N or --video FRAMES")
    count = args.images if args.images is not None else args.video
    if args.traffic and args.video is None:
        raise ConfigError("--traffic applies to --video FRAMES")
    coco = synthesize(args.out, count, seed=args.seed, width=width, height=height, video=args.video is not None,
                      traffic=args.traffic, rate_hz=args.rate)
    print(f"wrote {len(coco['images'])} images with {len(coco['annotations'])} objects "
          f"of {len(CLASSES)} classes to {args.out}")
    return 0
