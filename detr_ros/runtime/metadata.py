"""What an ONNX file says about itself: class names, input size, resize mode, colour order, scale.

The exporter writes these ``metadata_props`` (``detr_ros.*`` keys, string values, JSON where
structured) and the runtime reads them back. Files exported elsewhere carry none of them, so
every field has a fallback: the declared input shape, a labels file, Ultralytics' own ``names``
and ``imgsz`` entries, and finally plain defaults (640x640, stretch, RGB, 1/255).
"""

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

from detr_ros.errors import ConfigError, ModelFileError

PREFIX = "detr_ros."
KEY_CLASS_NAMES = PREFIX + "class_names"
KEY_CATEGORY_IDS = PREFIX + "category_ids"
KEY_INPUT_SIZE = PREFIX + "input_size"
KEY_RESIZE_MODE = PREFIX + "resize_mode"
KEY_COLOR_ORDER = PREFIX + "color_order"
KEY_SCALE = PREFIX + "scale"
KEY_MODEL_NAME = PREFIX + "model_name"
KEY_SOURCE_SHA256 = PREFIX + "source_sha256"
KEY_VERSION = PREFIX + "version"
# Written on INT8 exports: the graph carries its own calibration as QuantizeLinear/DequantizeLinear
# pairs. "int8_qdq": uint8 activations with zero points, fastest on the CPU; "int8_qdq_symmetric":
# int8 activations with zero points of 0, the only kind TensorRT runs (without a calibration table).
KEY_QUANTIZATION = PREFIX + "quantization"
QUANTIZATION_INT8_QDQ = "int8_qdq"
QUANTIZATION_INT8_QDQ_SYMMETRIC = "int8_qdq_symmetric"
# On CPU INT8 files: 8 where the weights use the full int8 range (for CPUs that sum int8 products in
# int32), 7 where they run right on any x86-64 CPU (see detr_ros.runtime.cpu); the CPU it was made on.
KEY_INT8_WEIGHT_BITS = PREFIX + "int8_weight_bits"
INT8_WEIGHT_BITS = (7, 8)
KEY_QUANTIZED_ON = PREFIX + "quantized_on"
# Written on FP16 exports: "fp16", a strongly typed graph with FP16 weights and activations where
# FP16 keeps FP32's detections, FP32 elsewhere and at its inputs and outputs (detr_ros.export.fp16).
# TensorRT builds such a file in the precisions it declares; absent on FP32 and INT8 files.
KEY_PRECISION = PREFIX + "precision"
PRECISION_FP16 = "fp16"

RESIZE_MODES = ("stretch", "letterbox")
MODEL_COLOR_ORDERS = ("rgb", "bgr")
SCALES = {"1/255": 1.0 / 255.0, "1": 1.0}
DEFAULT_INPUT_SIZE = (640, 640)


@dataclass
class ModelMetadata:
    """How to feed a model and how to name what it finds.

    input_size: (height, width) of the network input.
    class_names: name of each training class; class_names[i] is class id i.
    category_ids: dataset category id of each training class (same length as class_names).
    """

    input_size: tuple = DEFAULT_INPUT_SIZE
    resize_mode: str = "stretch"
    color_order: str = "rgb"
    scale: str = "1/255"
    normalization: str = "none"  # after scaling (preprocess.NORMALIZATIONS); set by the model's format
    class_names: list = field(default_factory=list)
    category_ids: list = field(default_factory=list)
    model_name: str = ""
    source_sha256: str = ""
    version: str = ""
    quantization: str = ""
    int8_weight_bits: int = 0
    quantized_on: str = ""
    precision: str = ""

    @property
    def scale_factor(self):
        return SCALES[self.scale]

    def to_props(self):
        """The ``metadata_props`` dict (all string values) the exporter writes into the file."""
        props = {
            KEY_CLASS_NAMES: json.dumps(list(self.class_names)),
            KEY_CATEGORY_IDS: json.dumps([int(c) for c in self.category_ids]),
            KEY_INPUT_SIZE: json.dumps([int(s) for s in self.input_size]),
            KEY_RESIZE_MODE: self.resize_mode,
            KEY_COLOR_ORDER: self.color_order,
            KEY_SCALE: self.scale,
            KEY_MODEL_NAME: self.model_name,
            KEY_SOURCE_SHA256: self.source_sha256,
            KEY_VERSION: self.version,
        }
        if self.quantization:
            props[KEY_QUANTIZATION] = self.quantization
        if self.int8_weight_bits:
            props[KEY_INT8_WEIGHT_BITS] = str(self.int8_weight_bits)
        if self.quantized_on:
            props[KEY_QUANTIZED_ON] = self.quantized_on
        if self.precision:
            props[KEY_PRECISION] = self.precision
        return props


def _json_value(props, key, path):
    try:
        return json.loads(props[key])
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{path}: metadata {key}={props[key]!r} is not valid JSON ({error})") from None


def _choice(props, key, choices, default, path):
    value = props.get(key, default)
    if value not in choices:
        raise ModelFileError(f"{path}: metadata {key}={value!r}, expected one of {list(choices)}")
    return value


def _input_size(value, key, path):
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value)):
        raise ModelFileError(f"{path}: metadata {key}={value!r}, expected [height, width] as two positive integers")
    return (int(value[0]), int(value[1]))


def ultralytics_names(props):
    """Ultralytics writes ``names`` as a Python dict literal {0: 'person', ...}."""
    try:
        names = ast.literal_eval(props["names"])
    except (ValueError, SyntaxError):
        return []
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        return [str(names[i]) for i in range(len(names))]
    return []


def parse_size(text):
    """'HxW' as given on a command line -> (H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"size {text!r}, expected HEIGHTxWIDTH such as 720x1280") from None
    if height <= 0 or width <= 0:
        raise ConfigError(f"size {text!r}, expected positive height and width")
    return height, width


def read_labels_file(labels_path):
    """One class name per line, in training-class order; blank lines are ignored."""
    labels_path = Path(labels_path)
    try:
        text = labels_path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"labels file {labels_path}: cannot be read ({error.strerror or error})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ConfigError(f"labels file {labels_path}: holds no class names, expected one name per line")
    return names


def parse_metadata(props, path, *, declared_input_size=None, labels_path=None):
    """Build ModelMetadata from a file's ``metadata_props``, with fallbacks for foreign files.

    props: the file's custom metadata map (str -> str).
    declared_input_size: (height, width) from the graph's input shape, when it is static.
    labels_path: optional labels file; it overrides the names in the file.
    """
    meta = ModelMetadata()
    if KEY_INPUT_SIZE in props:
        meta.input_size = _input_size(_json_value(props, KEY_INPUT_SIZE, path), KEY_INPUT_SIZE, path)
    elif declared_input_size is not None:
        meta.input_size = declared_input_size
    elif "imgsz" in props:
        try:
            meta.input_size = _input_size(ast.literal_eval(props["imgsz"]), "imgsz", path)
        except (ValueError, SyntaxError):
            pass
    if declared_input_size is not None and meta.input_size != declared_input_size:
        raise ModelFileError(
            f"{path}: metadata input size {list(meta.input_size)} differs from the graph's declared input "
            f"{list(declared_input_size)}"
        )
    meta.resize_mode = _choice(props, KEY_RESIZE_MODE, RESIZE_MODES, meta.resize_mode, path)
    meta.color_order = _choice(props, KEY_COLOR_ORDER, MODEL_COLOR_ORDERS, meta.color_order, path)
    meta.scale = _choice(props, KEY_SCALE, tuple(SCALES), meta.scale, path)
    meta.model_name = props.get(KEY_MODEL_NAME, props.get("description", Path(path).stem))
    meta.source_sha256 = props.get(KEY_SOURCE_SHA256, "")
    meta.version = props.get(KEY_VERSION, "")
    meta.quantization = props.get(KEY_QUANTIZATION, "")
    if KEY_INT8_WEIGHT_BITS in props:
        meta.int8_weight_bits = int(_choice(props, KEY_INT8_WEIGHT_BITS, [str(b) for b in INT8_WEIGHT_BITS], "", path))
    meta.quantized_on = props.get(KEY_QUANTIZED_ON, "")
    meta.precision = _choice(props, KEY_PRECISION, (PRECISION_FP16, ""), "", path)

    if labels_path is not None:
        meta.class_names = read_labels_file(labels_path)
    elif KEY_CLASS_NAMES in props:
        names = _json_value(props, KEY_CLASS_NAMES, path)
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ModelFileError(f"{path}: metadata {KEY_CLASS_NAMES} must be a JSON list of strings")
        meta.class_names = names
    elif "names" in props:
        meta.class_names = ultralytics_names(props)

    if KEY_CATEGORY_IDS in props:
        ids = _json_value(props, KEY_CATEGORY_IDS, path)
        if not (isinstance(ids, list) and all(isinstance(i, int) for i in ids)):
            raise ModelFileError(f"{path}: metadata {KEY_CATEGORY_IDS} must be a JSON list of integers")
        if len(ids) != len(meta.class_names):
            raise ModelFileError(
                f"{path}: {len(ids)} category ids in {KEY_CATEGORY_IDS} but {len(meta.class_names)} class names"
            )
        meta.category_ids = ids
    else:
        meta.category_ids = list(range(len(meta.class_names)))
    return meta
