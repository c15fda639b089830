"""``detr-ros export CHECKPOINT OUTPUT.onnx``: a detr_ros checkpoint to a self-describing ONNX file.

The graph has the official RT-DETR signature with post-processing inside and carries its class
names, category ids, input size, resize mode, colour order and scaling as metadata (see
detr_ros.export.onnx_export). ``--int8`` also writes a statically quantized OUTPUT.int8.onnx,
``--fp16`` an FP16 OUTPUT.fp16.onnx for TensorRT.
"""

import logging
from pathlib import Path

from detr_ros.errors import ConfigError
from detr_ros.export.onnx_export import INT8_CPUS, MIN_OPSET, export
from detr_ros.runtime.metadata import RESIZE_MODES, parse_size


def add_arguments(parser):
    parser.add_argument("checkpoint", type=Path, help="detr_ros checkpoint (trained, or imported by detr-ros convert)")
    parser.add_argument("output", type=Path, help="ONNX file to write")
    parser.add_argument("--size", help="network input HxW (default: the model config's input_size)")
    parser.add_argument("--dynamic-size", action="store_true", help="let the image height and width vary")
    parser.add_argument("--simplify", action="store_true", help="simplify the graph with onnxslim")
    parser.add_argument("--opset", type=int, default=MIN_OPSET, help=f"ONNX opset (>= {MIN_OPSET})")
    parser.add_argument("--resize-mode", default="stretch", choices=RESIZE_MODES,
                        help="how the runtime fits camera images to the input (as in training)")
    parser.add_argument("--int8", action="store_true", help="also write OUTPUT.int8.onnx (static QDQ, for the CPU)")
    parser.add_argument("--int8-symmetric", action="store_true",
                        help="INT8 with symmetric int8 activations, the kind TensorRT runs (slower on the CPU)")
    parser.add_argument("--int8-cpu", default="this", choices=INT8_CPUS,
                        help="CPUs the INT8 file is for: 'this' kind of CPU (8-bit weights where it sums int8 "
                             "products in int32), or 'any' x86-64 CPU (7-bit weights); default this")
    parser.add_argument("--fp16", action="store_true",
                        help="also write OUTPUT.fp16.onnx: FP16 where it keeps FP32's detections, FP32 inputs and "
                             "outputs (for TensorRT; checked on the CPU before it is written)")
    parser.add_argument("--calibration", type=Path, help="dataset folder with images for INT8 calibration")
    parser.add_argument("--calibration-images", type=int, default=32, help="how many images calibrate INT8")


def run(args):
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("detr_ros").setLevel(logging.INFO)  # ours, not onnxruntime.quantization's chatter
    if args.int8 and args.calibration is None:
        raise ConfigError("--int8 needs --calibration DIR (a dataset folder with images)")
    if (args.calibration is not None or args.int8_symmetric) and not args.int8:
        raise ConfigError("--calibration and --int8-symmetric are only used with --int8")
    export(args.checkpoint, args.output, size=parse_size(args.size) if args.size else None,
           dynamic_size=args.dynamic_size, simplify=args.simplify, opset=args.opset, resize_mode=args.resize_mode,
           int8_calibration=args.calibration if args.int8 else None, num_calibration_images=args.calibration_images,
           int8_symmetric=args.int8_symmetric, int8_cpu=args.int8_cpu, fp16=args.fp16)
    return 0
