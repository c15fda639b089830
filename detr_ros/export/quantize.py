"""INT8 for the CPU: static QDQ quantization calibrated on images from a dataset folder.

Static QDQ keeps the convolutions in int8 end to end; dynamic quantization would turn them into
ConvInteger, which is slower than float on common CPUs. Calibration images go through the
runtime's own pre-processing, so the ranges seen are those of deployment.
"""

import logging
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from detr_ros.errors import DatasetError
from detr_ros.runtime.preprocess import Preprocessor

LOG = logging.getLogger("detr_ros.export")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Every operator onnxruntime can quantize, so that activations, adds and concatenations between
# convolutions stay int8 (no DequantizeLinear/QuantizeLinear pair around each: about 10% of the
# INT8 latency on RT-DETR-R18), except the decoder heads that produce the final boxes, scores,
# sampling points and attention weights (a few quanta there move boxes by pixels; they run on
# 300 queries, so float costs nothing) and the post-processing. The encoder heads stay int8: they
# run on every feature-map cell and only pick the queries and their first reference boxes, which
# the decoder layers refine.
FLOAT_SCOPES = ("dec_bbox_head", "dec_score_head", "query_pos_head", "sampling_offsets", "attention_weights",
                "bbox_embed", "class_embed", "/postprocessor/")
# No int8 kernel on the CPU: quantizing only adds a Q/DQ pair around the float one.
FLOAT_OPS = ("LayerNormalization",)


def float_nodes(model_proto):
    """Names of the nodes that stay in float (see FLOAT_SCOPES and FLOAT_OPS); names follow the module paths."""
    return [node.name for node in model_proto.graph.node
            if node.op_type in FLOAT_OPS or any(scope in node.name for scope in FLOAT_SCOPES)]


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
    """Feeds one pre-processed image at a time, in the graph's input signature (batch of 1)."""

    def __init__(self, files, metadata):
        self.files = list(files)
        self.preprocessor = Preprocessor(metadata.input_size, metadata.resize_mode, metadata.color_order,
                                         metadata.scale_factor)
        self.canvases = self.preprocessor.new_canvases()
        self.position = 0

    def get_next(self):
        if self.position >= len(self.files):
            return None
        path = self.files[self.position]
        self.position += 1
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"calibration image {path}: cannot be decoded")
        blob = np.empty((1, 3, *self.preprocessor.input_size), np.float32)
        self.preprocessor.fill(blob[0], image, "bgr", self.canvases)
        height, width = self.preprocessor.input_size
        # Boxes come out in canvas pixels during calibration; only the ranges of the network matter.
        return {"images": blob, "orig_target_sizes": np.array([[width, height]], np.int64)}

    def rewind(self):
        self.position = 0


def quantize_int8(fp32_path, int8_path, files, metadata, *, work_dir):
    """Write a static-QDQ INT8 copy of fp32_path to int8_path, calibrated on the image files."""
    LOG.info("INT8: calibrating on %d images from %s", len(files), Path(files[0]).parent)
    prepared = Path(work_dir) / "prepared.onnx"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(int8_path),
        ImageCalibrationReader(files, metadata),
        quant_format=QuantFormat.QDQ,
        nodes_to_exclude=float_nodes(onnx.load(str(prepared), load_external_data=False)),
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
