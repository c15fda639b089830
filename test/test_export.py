"""``detr-ros export``: PyTorch and ONNX Runtime agree on the same checkpoint and images.

A small RT-DETR (random weights, built by the modeling code, saved with save_checkpoint) is
exported at a square and a rectangular size and run at batch 1 and 3, directly and through the
runtime's Detector; the file describes itself; the graph is the deployed model (RepVGG fused,
input projections folded); bad requests get clear errors.
"""

import ast
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from detr_ros.cli import main
from detr_ros.errors import ConfigError, DetrRosError, ModelFileError
from detr_ros.export.deployed_decoder import DeployedMSDeformableAttention, DeployedRTDETRTransformer
from detr_ros.export.deployed_encoder import DeployedHybridEncoder, FusedRepVggBlock, MergedCSPRepLayer
from detr_ros.export.onnx_export import (DeployedDetector, detector_for_inference, export, trace_to_onnx,
                                        verify_export)
from detr_ros.modeling.build import build_model
from detr_ros.modeling.checkpoint import load_model, save_checkpoint
from detr_ros.modeling.config import ModelConfig
from detr_ros.modeling.deformable_attention import MSDeformableAttention
from detr_ros.modeling.hybrid_encoder import CSPRepLayer, HybridEncoder, RepVggBlock
from detr_ros.modeling.postprocess import PostProcessor
from detr_ros.modeling.rtdetr_decoder import RTDETRTransformer
from detr_ros.runtime import Detector
from detr_ros.runtime.preprocess import Preprocessor

REPO_ROOT = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["cone", "crate", "pallet"]
CATEGORY_IDS = [3, 5, 9]
TINY_RTDETR = dict(
    name="tiny_rtdetr", version="v2", backbone_depth=18, backbone_width=0.25, encoder_hidden_dim=32,
    encoder_nhead=4, encoder_dim_feedforward=64, encoder_expansion=0.5, hidden_dim=32, decoder_nhead=4,
    decoder_dim_feedforward=64, decoder_layers=2, num_queries=20, num_top_queries=15, num_denoising=0,
    num_points=[2, 2, 2], num_classes=len(CLASS_NAMES), input_size=[96, 96])


def make_checkpoint(path, settings, seed=0):
    config = ModelConfig.from_dict(settings)
    torch.manual_seed(seed)
    model = build_model(config)
    save_checkpoint(path, model_config=config.to_dict(), state_dict=model.state_dict(), class_names=CLASS_NAMES,
                    category_ids=CATEGORY_IDS)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("export")
    checkpoint = make_checkpoint(folder / "tiny.pt", TINY_RTDETR)
    square = export(checkpoint, folder / "square.onnx")
    rectangle = export(checkpoint, folder / "rectangle.onnx", size=(64, 128), simplify=True)
    # The reference is the model as trained: the export's rewrites (RepVGG fused, linear maps folded) are checked too.
    model, _ = load_model(checkpoint)
    pytorch = DeployedDetector(model.eval(), PostProcessor(TINY_RTDETR["num_top_queries"]))
    return {"checkpoint": checkpoint, "square": square["fp32"], "rectangle": rectangle["fp32"],
            "pytorch": pytorch, "folder": folder}


def run_both(pytorch, path, images, orig_sizes):
    with torch.no_grad():
        expected = [t.numpy() for t in pytorch(torch.from_numpy(images), torch.from_numpy(orig_sizes))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found = session.run(["labels", "boxes", "scores"], {"images": images, "orig_target_sizes": orig_sizes})
    return expected, found


@pytest.mark.parametrize("which, input_size", [("square", (96, 96)), ("rectangle", (64, 128))])
@pytest.mark.parametrize("batch", [1, 3])
def test_pytorch_and_onnxruntime_agree(exported, which, input_size, batch):
    rng = np.random.default_rng(batch)
    images = rng.random((batch, 3, *input_size), dtype=np.float32)
    orig_sizes = np.array([[640, 480], [333, 500], [128, 64]][:batch], np.int64)
    (labels, boxes, scores), (onnx_labels, onnx_boxes, onnx_scores) = run_both(
        exported["pytorch"], exported[which], images, orig_sizes)
    assert onnx_labels.dtype == np.int64 and onnx_boxes.shape == (batch, 15, 4)
    np.testing.assert_array_equal(onnx_labels, labels)
    np.testing.assert_allclose(onnx_scores, scores, atol=1e-4, rtol=0)
    np.testing.assert_allclose(onnx_boxes, boxes, atol=1e-2, rtol=0)


def test_dynamic_size_export_runs_any_size(exported, tmp_path):
    """--dynamic-size: the anchors and the position embedding follow the input, squares and rectangles."""
    path = export(exported["checkpoint"], tmp_path / "dynamic.onnx", dynamic_size=True)["fp32"]
    rng = np.random.default_rng(5)
    for input_size in ((96, 96), (64, 128), (160, 96)):
        images = rng.random((2, 3, *input_size), dtype=np.float32)
        orig_sizes = np.array([[640, 480], [128, 64]], np.int64)
        (labels, boxes, scores), (onnx_labels, onnx_boxes, onnx_scores) = run_both(
            exported["pytorch"], path, images, orig_sizes)
        np.testing.assert_array_equal(onnx_labels, labels)
        np.testing.assert_allclose(onnx_scores, scores, atol=1e-4, rtol=0)
        np.testing.assert_allclose(onnx_boxes, boxes, atol=1e-2, rtol=0)


def test_detector_matches_pytorch_on_camera_images(exported):
    """Through the runtime: uint8 BGR frames of another size, boxes in source pixels."""
    detector = Detector(exported["rectangle"], cache_dir=exported["folder"] / "cache", score_threshold=0.0,
                        max_detections=15, duplicate_iou=1.0)
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((120, 200), (300, 260), (64, 128))]
    found = detector.detect_batch(frames, "bgr")
    preprocessor = Preprocessor((64, 128), "stretch", "rgb", 1 / 255)
    canvases = preprocessor.new_canvases()
    for frame, detections in zip(frames, found):
        blob = np.empty((1, 3, 64, 128), np.float32)
        preprocessor.fill(blob[0], frame, "bgr", canvases)
        height, width = frame.shape[:2]
        with torch.no_grad():
            labels, boxes, scores = (t[0].numpy() for t in exported["pytorch"](
                torch.from_numpy(blob), torch.tensor([[width, height]])))
        order = np.argsort(-scores, kind="stable")
        boxes = boxes[order].clip(0, [width, height, width, height])
        np.testing.assert_array_equal(detections.class_ids, labels[order])
        np.testing.assert_allclose(detections.scores, scores[order], atol=1e-4)
        np.testing.assert_allclose(detections.boxes, boxes, atol=1e-2)


def test_file_describes_itself(exported):
    model = onnx.load(str(exported["rectangle"]))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["detr_ros.class_names"]) == CLASS_NAMES
    assert json.loads(props["detr_ros.category_ids"]) == CATEGORY_IDS
    assert json.loads(props["detr_ros.input_size"]) == [64, 128]
    assert (props["detr_ros.resize_mode"], props["detr_ros.color_order"], props["detr_ros.scale"]) == (
        "stretch", "rgb", "1/255")
    assert props["detr_ros.model_name"] == "tiny_rtdetr"
    assert props["detr_ros.source_sha256"] == hashlib.sha256(exported["checkpoint"].read_bytes()).hexdigest()
    assert props["detr_ros.version"]
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    images = model.graph.input[0].type.tensor_type.shape.dim
    assert images[0].dim_param and [d.dim_value for d in images[1:]] == [3, 64, 128]
    detector = Detector(exported["rectangle"], cache_dir=exported["folder"] / "cache")
    assert detector.class_names == CLASS_NAMES and detector.category_ids == CATEGORY_IDS


def test_graph_is_the_deployed_model(exported):
    """RepVGG blocks fused and input projections folded away: their convolutions are not in the graph."""
    convs = [node.name for node in onnx.load(str(exported["square"])).graph.node if node.op_type == "Conv"]
    assert [name for name in convs if "bottlenecks" in name]
    assert not [name for name in convs if "bottlenecks" in name and ("/conv1/" in name or "/conv2/" in name)]
    assert not [name for name in convs if "/decoder/input_proj" in name or "/encoder/input_proj.0/" in name]
    assert [name for name in convs if "fpn_coarse_convs" in name] and [name for name in convs if "level_value_proj" in name]


def test_export_substitutes_modules_and_leaves_the_trained_model_as_it_is(exported, tmp_path):
    """The modeling modules compute one way; the export's rewrites are modules of detr_ros.export put in
    place of trained ones in a copy, and the model it started from keeps its modules and weights."""
    model, checkpoint = load_model(exported["checkpoint"])
    config = ModelConfig.from_dict(checkpoint["model_config"])
    trained_types = [type(module) for module in model.modules()]
    trained_state = {key: value.clone() for key, value in model.state_dict().items()}
    deployed = detector_for_inference(model, config, (96, 96))
    trace_to_onnx(deployed, (96, 96), tmp_path / "traced.onnx", dynamic_size=False, opset=17)

    assert [type(module) for module in model.modules()] == trained_types
    assert model.state_dict().keys() == trained_state.keys()
    assert all(torch.equal(value, trained_state[key]) for key, value in model.state_dict().items())
    deployed_types = {type(module) for module in deployed.model.modules()}
    assert {DeployedHybridEncoder, DeployedRTDETRTransformer, DeployedMSDeformableAttention, FusedRepVggBlock,
            MergedCSPRepLayer} <= deployed_types
    assert not deployed_types & {HybridEncoder, RTDETRTransformer, MSDeformableAttention, RepVggBlock, CSPRepLayer}
    removed = ("deploy", "fuse", "merge_input_convs", "fixed_size", "enc_level_proj", "level_value_proj",
               "fpn_coarse_convs")
    assert not [(type(m).__name__, name) for m in model.modules() for name in removed if hasattr(m, name)]
    # One direction of imports: export -> modeling.
    for path in (REPO_ROOT / "detr_ros" / "modeling").glob("*.py"):
        nodes = list(ast.walk(ast.parse(path.read_text())))
        imported = [node.module or "" for node in nodes if isinstance(node, ast.ImportFrom)]
        imported += [alias.name for node in nodes if isinstance(node, ast.Import) for alias in node.names]
        assert not [name for name in imported if name.startswith("detr_ros.export")], path


class SizeBakingModel(torch.nn.Module):
    """Turns the image width into a Python constant, as a cache keyed on sizes would during tracing."""

    def forward(self, images, targets=None):
        width = int(images.shape[3])
        logits = images.mean((2, 3))[:, None, :].expand(-1, 4, -1) * width / 100.0
        return {"pred_logits": logits, "pred_boxes": torch.full((images.shape[0], 4, 4), 0.5)}


def test_dynamic_size_export_that_bakes_sizes_is_refused(tmp_path):
    deployed = DeployedDetector(SizeBakingModel(), PostProcessor(4))
    path = tmp_path / "baked.onnx"
    trace_to_onnx(deployed, (64, 64), path, dynamic_size=True, opset=17)
    verify_export(deployed, path, (64, 64), dynamic_size=False)  # right at the traced size
    with pytest.raises(DetrRosError, match="at input 128x32 differs from PyTorch.*without --dynamic-size"):
        verify_export(deployed, path, (64, 64), dynamic_size=True)


def test_bad_requests_are_refused(exported, tmp_path, capsys):
    with pytest.raises(ConfigError, match="--opset 13"):
        export(exported["checkpoint"], tmp_path / "old.onnx", opset=13)
    assert main(["export", str(exported["checkpoint"]), str(tmp_path / "x.onnx"), "--int8"]) == 2
    assert "--int8 needs --calibration" in capsys.readouterr().err
    with pytest.raises(ModelFileError, match="no such file"):
        export(tmp_path / "missing.pt", tmp_path / "missing.onnx")
    assert not (tmp_path / "old.onnx").exists() and not (tmp_path / "missing.onnx").exists()
