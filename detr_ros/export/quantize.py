"""INT8 for the CPU: static QDQ quantization calibrated on images from a dataset folder.

Static QDQ keeps the convolutions in int8 end to end; dynamic quantization would turn them into
ConvInteger, which is slower than float on common CPUs. Calibration images go through the
runtime's own pre-processing, so the ranges seen are those of deployment.
"""

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from detr_ros.errors import DatasetError
from detr_ros.runtime.cpu import PORTABLE_INT8_WEIGHT_BITS
from detr_ros.runtime.encoded_images import read_image_file
from detr_ros.runtime.preprocess import Preprocessor

LOG = logging.getLogger("detr_ros.export")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Every operator onnxruntime can quantize, so that activations, adds and concatenations between
# convolutions stay int8 (no DequantizeLinear/QuantizeLinear pair around each), except the query side
# of the decoder, its heads and the post-processing: they run on a few hundred queries, so float costs
# little, int8 runs them no faster, and it costs accuracy there. RT-DETR's encoder layer (attention
# over the cells of the coarsest map) stays float too: onnxruntime runs its int8 form slower than
# float. The projections that run on every feature-map cell (the value and enc_output projections,
# the encoder heads) stay int8.
FLOAT_SCOPES = ("/decoder/decoder/", "/transformer/decoder/", "query_pos_head", "bbox_embed", "class_embed",
                "/postprocessor/", "/encoder/encoder.")
INT8_INSIDE_FLOAT_SCOPES = ("value_proj",)
# No int8 kernel on the CPU: quantizing only adds a Q/DQ pair around the float one.
FLOAT_OPS = ("LayerNormalization",)
# A convolution with fewer input and output channels than this (a small model's stem, over the image
# and its first thin maps) runs slower in int8 than in float: onnxruntime's int8 kernel unrolls so few
# channels into too short a dot product to pay for its packing, while the float one convolves them
# directly. A wider stem convolution stays int8: it feeds the max pool, which runs fast only in int8.
MIN_INT8_CONV_CHANNELS = 16
NON_FINITE_STAND_IN = 1e6
# Calibration keeps every intermediate tensor of the images it is handed before folding them into
# the histograms, most of a gigabyte an image for RT-DETR-R18 at 640x640: hand it one at a time.
CALIBRATION_IMAGES_IN_MEMORY = 1
# Percentile ranges: MinMax lets a few outlier activations coarsen every other value's quantum.
CALIBRATION_PERCENTILE = 99.999


def _non_finite_constants(graph):
    """(float initializers, Constant nodes' value tensors) that hold inf or nan."""
    initializers = [init for init in graph.initializer if init.data_type == onnx.TensorProto.FLOAT
                    and not np.isfinite(numpy_helper.to_array(init)).all()]
    constants = [(node, a.t) for node in graph.node if node.op_type == "Constant" for a in node.attribute
                 if a.name == "value" and a.t.data_type == onnx.TensorProto.FLOAT
                 and not np.isfinite(numpy_helper.to_array(a.t)).all()]
    return initializers, constants


def computed_from_non_finite(model_proto):
    """Names of the nodes downstream of a constant holding inf or nan.

    RT-DETR marks the anchors of border cells with inf: a tensor computed from them has no finite
    range to calibrate, and quantizing it would zero every finite value in it.
    """
    initializers, constants = _non_finite_constants(model_proto.graph)
    tainted = {init.name for init in initializers} | {out for node, _ in constants for out in node.output}
    names = {node.name for node, _ in constants}
    for node in model_proto.graph.node:  # ONNX nodes are topologically sorted
        if any(name in tainted for name in node.input):
            tainted.update(node.output)
            names.add(node.name)
    return names


def replace_non_finite(model_proto):
    """Swap inf/nan in constants for +-NON_FINITE_STAND_IN (in place), so calibration can histogram
    the tensors computed from them; those nodes stay float (computed_from_non_finite), where a
    logit of 1e6 saturates exactly like inf."""
    initializers, constants = _non_finite_constants(model_proto.graph)
    for tensor in initializers + [t for _, t in constants]:
        values = np.nan_to_num(numpy_helper.to_array(tensor), nan=0.0, posinf=NON_FINITE_STAND_IN,
                               neginf=-NON_FINITE_STAND_IN)
        tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float32), tensor.name))


def _thin_convolution(graph, node):
    """Whether ``node`` is an ungrouped convolution with fewer than MIN_INT8_CONV_CHANNELS channels in and out."""
    if node.op_type != "Conv" or any(a.name == "group" and a.i != 1 for a in node.attribute):
        return False
    weight = _constant_values(graph, node.input[1])
    return weight is not None and weight.ndim >= 3 and max(weight.shape[:2]) < MIN_INT8_CONV_CHANNELS


def float_nodes(model_proto):
    """Names of the nodes that stay in float (FLOAT_SCOPES, FLOAT_OPS, thin convolutions, non-finite inputs)."""
    non_finite = computed_from_non_finite(model_proto)
    return [node.name for node in model_proto.graph.node
            if node.op_type in FLOAT_OPS or node.name in non_finite or _thin_convolution(model_proto.graph, node)
            or (any(scope in node.name for scope in FLOAT_SCOPES)
                and not any(part in node.name for part in INT8_INSIDE_FLOAT_SCOPES))]


def shapes_before_dequantizing(model_proto):
    """Point every Shape node that reads a DequantizeLinear's output at its input (same shape) and
    drop the dequantizations nothing else reads (in place): onnxruntime would otherwise dequantize a
    whole feature map only to learn its size."""
    graph = model_proto.graph
    producers = {output: node for node in graph.node for output in node.output}
    for node in graph.node:
        source = producers.get(node.input[0]) if node.op_type == "Shape" else None
        if source is not None and source.op_type == "DequantizeLinear":
            node.input[0] = source.input[0]
    read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    unread = [node for node in graph.node if node.op_type == "DequantizeLinear" and node.output[0] not in read]
    for node in unread:
        graph.node.remove(node)


def _constant_values(graph, name):
    """The array an initializer or a Constant node gives ``name``, or None if it is computed."""
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t) if node.attribute[0].name == "value" else None
    return None


def _integer_upsampling_factor(graph, node):
    """k where ``node`` repeats every pixel of a [B, C, H, W] map k x k times (a Resize: nearest,
    floor of the asymmetric source coordinate, constant scales [1, 1, k, k]); None otherwise."""
    if node.op_type != "Resize" or len(node.input) < 3 or node.input[1] or any(node.input[3:]):
        return None
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if (attributes.get("mode"), attributes.get("coordinate_transformation_mode"),
            attributes.get("nearest_mode")) != (b"nearest", b"asymmetric", b"floor"):
        return None
    scales = _constant_values(graph, node.input[2])
    if scales is None or scales.shape != (4,) or tuple(scales[:2]) != (1, 1) or scales[2] != scales[3]:
        return None
    factor = float(scales[2])
    return int(factor) if factor.is_integer() and factor >= 1 else None


def upsampling_as_copies(model_proto):
    """Rewrite each nearest upsampling by an integer factor k as a copy in channels-last order (in
    place): [B, C, H, W] -> [B, H, 1, W, 1, C] -> expanded to [B, H, k, W, k, C] -> [B, C, kH, kW].

    onnxruntime runs int8 maps channels-last, where it resizes an order of magnitude slower than it
    copies, and the transposes cancel those around its int8 convolutions. In float, Resize is the
    faster: the FP32 file keeps it.
    """
    graph = model_proto.graph
    opset = next((entry.version for entry in model_proto.opset_import if entry.domain in ("", "ai.onnx")), 0)
    if opset < 13:  # Unsqueeze takes its axes as an input from opset 13
        return
    rewritten = []
    for node in graph.node:
        factor = _integer_upsampling_factor(graph, node)
        if factor is None:
            rewritten.append(node)
            continue
        prefix = node.name or node.output[0]
        constants = {f"{prefix}/axes": [2, 4], f"{prefix}/repeats": [1, 1, factor, 1, factor, 1],
                     f"{prefix}/size_scales": [1, factor, factor, 1]}
        graph.initializer.extend(numpy_helper.from_array(np.array(v, np.int64), k) for k, v in constants.items())
        rewritten += [
            helper.make_node("Transpose", [node.input[0]], [f"{prefix}/nhwc"], name=f"{prefix}/ToChannelsLast",
                             perm=[0, 2, 3, 1]),
            helper.make_node("Unsqueeze", [f"{prefix}/nhwc", f"{prefix}/axes"], [f"{prefix}/spread"],
                             name=f"{prefix}/Spread"),
            helper.make_node("Expand", [f"{prefix}/spread", f"{prefix}/repeats"], [f"{prefix}/repeated"],
                             name=f"{prefix}/Repeat"),
            helper.make_node("Shape", [f"{prefix}/nhwc"], [f"{prefix}/shape"], name=f"{prefix}/Shape"),
            helper.make_node("Mul", [f"{prefix}/shape", f"{prefix}/size_scales"], [f"{prefix}/size"],
                             name=f"{prefix}/Size"),
            helper.make_node("Reshape", [f"{prefix}/repeated", f"{prefix}/size"], [f"{prefix}/upsampled"],
                             name=f"{prefix}/Merge"),
            helper.make_node("Transpose", [f"{prefix}/upsampled"], list(node.output), name=f"{prefix}/ToChannelsFirst",
                             perm=[0, 3, 1, 2]),
        ]
    del graph.node[:]
    graph.node.extend(rewritten)


def calibration_images(folder, limit):
    """Up to ``limit`` image files from a COCO-layout folder (FOLDER/images/) or a plain one, sorted."""
    folder = Path(folder)
    images_dir = folder / "images" if (folder / "images").is_dir() else folder
    if not images_dir.is_dir():
        raise DatasetError(f"calibration folder {folder}: does not exist, expected a dataset folder with images")
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise DatasetError(f"calibration folder {images_dir}: holds no {'/'.join(IMAGE_SUFFIXES)} images")
    return files


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds one pre-processed image at a time (batch of 1) to the graph's inputs: input_names[0]
    takes the image, input_names[1], where the graph has it, the (W, H) size."""

    def __init__(self, files, metadata, input_names):
        self.input_names = list(input_names)
        self.all_files = list(files)
        self.files = self.all_files
        self.preprocessor = Preprocessor(metadata.input_size, metadata.resize_mode, metadata.color_order,
                                         metadata.scale_factor)
        self.canvases = self.preprocessor.new_canvases()
        self.position = 0

    def get_next(self):
        if self.position >= len(self.files):
            return None
        path = self.files[self.position]
        self.position += 1
        image = read_image_file(path)
        blob = np.empty((1, 3, *self.preprocessor.input_size), np.float32)
        self.preprocessor.fill(blob[0], image, "bgr", self.canvases)
        height, width = self.preprocessor.input_size
        # Boxes come out in canvas pixels during calibration; only the ranges of the network matter.
        feeds = (blob, np.array([[width, height]], np.int64))
        return dict(zip(self.input_names, feeds))

    def __len__(self):
        return len(self.all_files)

    def set_range(self, start_index, end_index):
        """Feed only files[start_index:end_index]: onnxruntime calibrates in such slices (CalibStridedMinMax)."""
        self.files = self.all_files[start_index:end_index]
        self.position = 0



def quantize_int8(fp32_path, int8_path, files, metadata, *, work_dir, symmetric=False,
                  weight_bits=PORTABLE_INT8_WEIGHT_BITS):
    """Write a static-QDQ INT8 copy of fp32_path to int8_path, calibrated on the image files.

    fp32_path: a detr_ros export, or any graph whose first input takes the image batch (and whose
    second, if it has one, the original sizes). symmetric: int8 activations with zero points of 0
    (what TensorRT needs) instead of uint8 ones (what the CPU runs fastest). weight_bits: 8 for CPUs that
    sum int8 products in int32, 7 for any x86-64 CPU (see detr_ros.runtime.cpu); TensorRT's symmetric
    file always uses 8.
    """
    LOG.info("INT8: calibrating on %d images from %s", len(files), Path(files[0]).parent)
    prepared = Path(work_dir) / "prepared.onnx"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    model_proto = onnx.load(str(prepared))
    if not symmetric:  # a layout trick for onnxruntime's CPU kernels, not for TensorRT
        upsampling_as_copies(model_proto)
    excluded = float_nodes(model_proto)
    initializers = {init.name for init in model_proto.graph.initializer}
    input_names = [arg.name for arg in model_proto.graph.input if arg.name not in initializers]
    replace_non_finite(model_proto)
    onnx.save(model_proto, str(prepared))
    quantize_static(
        str(prepared),
        str(int8_path),
        ImageCalibrationReader(files, metadata, input_names),
        quant_format=QuantFormat.QDQ,
        nodes_to_exclude=excluded,
        per_channel=True,
        reduce_range=not symmetric and weight_bits == PORTABLE_INT8_WEIGHT_BITS,
        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={"CalibPercentile": CALIBRATION_PERCENTILE, "ActivationSymmetric": symmetric,
                       "WeightSymmetric": True, "CalibStridedMinMax": CALIBRATION_IMAGES_IN_MEMORY},
    )
    quantized = onnx.load(str(int8_path))
    shapes_before_dequantizing(quantized)
    onnx.save(quantized, str(int8_path))
