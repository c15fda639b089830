"""The options that tell the runtime how to read a foreign ONNX file, shared by detect, eval and bench."""

from detr_ros.runtime.formats import FORMATS
from detr_ros.runtime.metadata import RESIZE_MODES
from detr_ros.runtime.preprocess import NORMALIZATIONS


def add_format_arguments(parser):
    parser.add_argument("--model-format", choices=list(FORMATS),
                        help="the model file's format, for a file whose shapes and metadata do not decide it (the "
                             "error on loading lists the candidates); default: recognised from the file")
    parser.add_argument("--resize-mode", choices=RESIZE_MODES,
                        help="how images are fitted to the network input; default: as the file's metadata or its "
                             "format says")
    parser.add_argument("--normalization", choices=list(NORMALIZATIONS),
                        help="applied after scaling pixels to 0..1: none, or imagenet (ImageNet mean/std, as "
                             "RF-DETR and DEIMv2 S to X expect); default: as the format says")


def format_options(args):
    """The Detector keyword arguments the command line gave (only those given)."""
    given = {"model_format": args.model_format, "resize_mode": args.resize_mode, "normalization": args.normalization}
    return {name: value for name, value in given.items() if value is not None}
