"""``detr-ros export CHECKPOINT OUTPUT.onnx``: a detr_ros checkpoint to a self-describing ONNX file.

The graph has the signature the official RT-DETR family exports share (images, orig_target_sizes ->
labels, boxes, scores), with post-processing inside, so the runtime and any other consumer of that
signature can run it. RT-DETR is first rewritten for inference with the same outputs
(deploy_for_inference: RepVGG blocks fused, linear maps that follow one another folded into one,
constants where the input size is fixed). The file carries its class names, category ids, input
size, resize mode, colour order and scaling as metadata_props.
"""

import logging
import os
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import onnx
import torch
from torch import nn

import detr_ros
from detr_ros.errors import ConfigError
from detr_ros.export.deploy import deploy_for_inference
from detr_ros.export.fp16 import check_images, make_fp16
from detr_ros.export.quantize import calibration_images, quantize_int8
from detr_ros.export.verify import verify_export
from detr_ros.modeling.checkpoint import load_model, model_config_from_checkpoint
from detr_ros.modeling.postprocess import PostProcessor
from detr_ros.runtime.cpu import PORTABLE_INT8_WEIGHT_BITS, describe_cpu, int8_weight_bits
from detr_ros.runtime.metadata import (
    PRECISION_FP16,
    QUANTIZATION_INT8_QDQ,
    QUANTIZATION_INT8_QDQ_SYMMETRIC,
    RESIZE_MODES,
    ModelMetadata,
)
from detr_ros.runtime.model_file import file_digest

LOG = logging.getLogger("detr_ros.export")
MIN_OPSET = 17
INPUT_NAMES = ["images", "orig_target_sizes"]
OUTPUT_NAMES = ["labels", "boxes", "scores"]
INT8_CPUS = ("this", "any")


class DeployedDetector(nn.Module):
    """A detr_ros model with its post-processing, in the exported signature.

    images: [N, 3, H, W] float RGB in [0, 1]; orig_target_sizes: [N, 2] int64 (W, H) of the originals.
    Returns labels [N, K] int64, boxes [N, K, 4] xyxy in original pixels, scores [N, K].
    """

    def __init__(self, model, postprocessor):
        super().__init__()
        self.model = model
        self.postprocessor = postprocessor

    def forward(self, images, orig_target_sizes):
        return self.postprocessor(self.model(images), orig_target_sizes)


def detector_for_inference(model, config, input_size=None):
    """DeployedDetector in eval mode: ``model`` rewritten by deploy_for_inference (for that input size
    (H, W) only, where given) and the post-processing of its architecture."""
    # DETR's last class is "no object": softmax, best real class per query; RT-DETR: sigmoid top-K.
    score_mode = "softmax" if config.architecture == "detr" else "sigmoid"
    postprocessor = PostProcessor(config.num_top_queries, score_mode)
    return DeployedDetector(deploy_for_inference(model, input_size), postprocessor).eval()


def deployed_detector(checkpoint_path):
    """(DeployedDetector in eval mode for any input size (detector_for_inference), ModelConfig, checkpoint dict)."""
    model, checkpoint = load_model(checkpoint_path)
    config = model_config_from_checkpoint(checkpoint, checkpoint_path)
    return detector_for_inference(model, config), config, checkpoint


def export_metadata(config, checkpoint, checkpoint_path, input_size, resize_mode):
    return ModelMetadata(
        input_size=tuple(input_size), resize_mode=resize_mode, color_order="rgb", scale="1/255",
        class_names=list(checkpoint["class_names"]), category_ids=[int(c) for c in checkpoint["category_ids"]],
        model_name=config.name or Path(checkpoint_path).stem, source_sha256=file_digest(checkpoint_path)[0],
        version=detr_ros.__version__)


def write_model(model_proto, metadata, output_path):
    """Set metadata_props, check the graph and write it atomically (a temp file, then rename)."""
    del model_proto.metadata_props[:]
    for key, value in metadata.to_props().items():
        model_proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model_proto)
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(output_path.name + ".partial")
    onnx.save(model_proto, str(partial))
    os.replace(partial, output_path)


def trace_to_onnx(deployed, input_size, path, *, dynamic_size, opset):
    height, width = input_size
    images = torch.rand(1, 3, height, width)
    sizes = torch.tensor([[width, height]], dtype=torch.int64)
    # torch.onnx.export restores the wrapper's train/eval mode afterwards, recursively: eval it first.
    deployed.eval()
    batch_axes = {name: {0: "N"} for name in INPUT_NAMES + OUTPUT_NAMES}
    if dynamic_size:
        batch_axes["images"] = {0: "N", 2: "H", 3: "W"}
    # The tracer warns about every size turned into a constant; verify_export checks the result instead.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript-based exporter's notice
        torch.onnx.export(deployed, (images, sizes), str(path), input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                          dynamic_axes=batch_axes, opset_version=opset, do_constant_folding=True, dynamo=False)


def export(checkpoint_path, output_path, *, size=None, dynamic_size=False, simplify=False, opset=MIN_OPSET,
           resize_mode="stretch", int8_calibration=None, num_calibration_images=32, int8_symmetric=False,
           int8_cpu="this", fp16=False):
    """Export a checkpoint; returns {"fp32": path, "int8": path or None, "fp16": path or None,
    "fp16_report": detr_ros.export.fp16.Fp16Report or None, "metadata": ModelMetadata}.

    int8_cpu: "this" quantizes the CPU file for the kind of CPU the export runs on (8-bit weights where
    it sums int8 products in int32), "any" for every x86-64 CPU (7-bit weights).
    fp16: also write OUTPUT.fp16.onnx (see detr_ros.export.fp16), checked on black, white, noise and
    synthetic images and on the calibration images when int8_calibration is given.
    """
    if opset < MIN_OPSET:
        raise ConfigError(f"--opset {opset}, expected {MIN_OPSET} or newer")
    if int8_cpu not in INT8_CPUS:
        raise ConfigError(f"--int8-cpu {int8_cpu!r}, expected one of {list(INT8_CPUS)}")
    if resize_mode not in RESIZE_MODES:
        raise ConfigError(f"--resize-mode {resize_mode!r}, expected one of {list(RESIZE_MODES)}")
    # Calibration images are checked before the slow part, so a bad folder fails at once.
    calibration_files = calibration_images(int8_calibration, num_calibration_images) if int8_calibration else None
    model, checkpoint = load_model(checkpoint_path)
    config = model_config_from_checkpoint(checkpoint, checkpoint_path)
    input_size = tuple(size or config.input_size)
    deployed = detector_for_inference(model, config, None if dynamic_size else input_size)
    metadata = export_metadata(config, checkpoint, checkpoint_path, input_size, resize_mode)
    output_path = Path(output_path)
    with tempfile.TemporaryDirectory(prefix="detr_ros_export_") as work_dir:
        traced = Path(work_dir) / "traced.onnx"
        trace_to_onnx(deployed, input_size, traced, dynamic_size=dynamic_size, opset=opset)
        verify_export(deployed, traced, input_size, dynamic_size=dynamic_size)
        model_proto = onnx.load(str(traced))
        if simplify:
            import onnxslim  # optional: only --simplify needs it

            model_proto = onnxslim.slim(model_proto)
        write_model(model_proto, metadata, output_path)
        LOG.info("wrote %s (%s, input %dx%d%s)", output_path, metadata.model_name, *input_size,
                 ", dynamic size" if dynamic_size else "")
        fp16_path = fp16_report = None
        if fp16:
            fp16_path = output_path.with_name(output_path.stem + ".fp16.onnx")
            half, fp16_report = make_fp16(model_proto, check_images(metadata, calibration_files or ()))
            write_model(half, replace(metadata, precision=PRECISION_FP16), fp16_path)
            LOG.info("wrote %s (FP16, %d operators kept FP32, %.0f%% of the weights FP16)", fp16_path,
                     len(fp16_report.plan.fp32_nodes), 100 * fp16_report.fp16_weight_fraction)
        int8_path = None
        if calibration_files:
            int8_path = output_path.with_name(output_path.stem + ".int8.onnx")
            quantized = Path(work_dir) / "int8.onnx"
            int8_metadata = replace(metadata, quantization=QUANTIZATION_INT8_QDQ)
            if int8_symmetric:
                int8_metadata.quantization = QUANTIZATION_INT8_QDQ_SYMMETRIC
            else:
                int8_metadata.int8_weight_bits = int8_weight_bits() if int8_cpu == "this" else PORTABLE_INT8_WEIGHT_BITS
                int8_metadata.quantized_on = describe_cpu()
            quantize_int8(output_path, quantized, calibration_files, metadata, work_dir=work_dir,
                          symmetric=int8_symmetric, weight_bits=int8_metadata.int8_weight_bits)
            write_model(onnx.load(str(quantized)), int8_metadata, int8_path)
            if int8_symmetric:
                LOG.info("wrote %s (static QDQ INT8, symmetric, for TensorRT)", int8_path)
            else:
                LOG.info("wrote %s (static QDQ INT8 for the CPU, %d-bit weights: %s)", int8_path,
                         int8_metadata.int8_weight_bits,
                         "for CPUs that sum int8 products in int32, such as this one"
                         if int8_metadata.int8_weight_bits == 8 else "for any x86-64 CPU")
    return {"fp32": output_path, "int8": int8_path, "fp16": fp16_path, "fp16_report": fp16_report,
            "metadata": metadata}
