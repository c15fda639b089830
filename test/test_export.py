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
from onnx import numpy_helper
import pytest
import torch

from detr_ros.cli import main
from detr_ros.errors import ConfigError, DetrRosError, ModelFileError
from detr_ros.export.deployed_decoder import DeployedMSDeformableAttention, DeployedRTDETRTransformer
from detr_ros.export.deployed_encoder import DeployedHybridEncoder, FusedRepVggBlock, MergedCSPRepLayer
from detr_ros.export.onnx_export import DeployedDetector, deployed_detector, detector_for_inference, export, trace_to_onnx
from detr_ros.export.verify import GraphRunner, compare, detection_difference, pytorch_outputs, verify_export
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
SHIPPED_CHECKPOINT = REPO_ROOT / "models" / "synthetic_rtdetr.pt"
CLASS_NAMES = ["cone", "crate", "pallet"]
CATEGORY_IDS = [3, 5, 9]
TINY_RTDETR = dict(
    name="tiny_rtdetr", version="v2", backbone_depth=18, backbone_width=0.25, encoder_hidden_dim=32,
    encoder_nhead=4, encoder_dim_feedforward=64, encoder_expansion=0.5, hidden_dim=32, decoder_nhead=4,
    decoder_dim_feedforward=64, decoder_layers=2, num_queries=20, num_top_queries=15, num_denoising=0,
    num_points=[2, 2, 2], num_classes=len(CLASS_NAMES), input_size=[96, 96])


def make_checkpoint(path, settings, seed=0, edit=None):
    config = ModelConfig.from_dict(settings)
    torch.manual_seed(seed)
    model = build_model(config)
    if edit is not None:
        with torch.no_grad():
            edit(model)
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


@pytest.mark.parametrize("which, input_size", [("square", (96, 96)), ("rectangle", (64, 128))])
@pytest.mark.parametrize("batch", [1, 3])
def test_pytorch_and_onnxruntime_agree(exported, which, input_size, batch):
    rng = np.random.default_rng(batch)
    images = rng.random((batch, 3, *input_size), dtype=np.float32)
    orig_sizes = np.array([[640, 480], [333, 500], [128, 64]][:batch], np.int64)
    runner = GraphRunner(exported[which])
    (labels, boxes, _), selected = runner.run(images, orig_sizes)
    assert labels.dtype == np.int64 and boxes.shape == (batch, 15, 4) and selected.shape == (batch, 20)
    assert compare(exported["pytorch"], runner, images, orig_sizes) is None


def test_dynamic_size_export_runs_any_size(exported, tmp_path):
    """--dynamic-size: the anchors and the position embedding follow the input, squares and rectangles."""
    path = export(exported["checkpoint"], tmp_path / "dynamic.onnx", dynamic_size=True)["fp32"]
    runner = GraphRunner(path)
    rng = np.random.default_rng(5)
    for input_size in ((96, 96), (64, 128), (160, 96)):
        images = rng.random((2, 3, *input_size), dtype=np.float32)
        orig_sizes = np.array([[640, 480], [128, 64]], np.int64)
        assert compare(exported["pytorch"], runner, images, orig_sizes) is None


def test_detector_matches_pytorch_on_camera_images(exported):
    """Through the runtime: uint8 BGR frames of another size, boxes in source pixels."""
    detector = Detector(exported["rectangle"], cache_dir=exported["folder"] / "cache", score_threshold=0.0,
                        max_detections=15, duplicate_iou=1.0)
    runner = GraphRunner(exported["rectangle"])
    rng = np.random.default_rng(7)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((120, 200), (300, 260), (64, 128))]
    found = detector.detect_batch(frames, "bgr")
    preprocessor = Preprocessor((64, 128), "stretch", "rgb", 1 / 255)
    canvases = preprocessor.new_canvases()
    for frame, detections in zip(frames, found):
        blob = np.empty((1, 3, 64, 128), np.float32)
        preprocessor.fill(blob[0], frame, "bgr", canvases)
        height, width = frame.shape[:2]
        orig_sizes = np.array([[width, height]], np.int64)
        _, selected = runner.run(blob, orig_sizes)
        (labels, boxes, scores), _ = pytorch_outputs(exported["pytorch"], blob, orig_sizes, selected)
        boxes = boxes[0].clip(0, [width, height, width, height])
        assert detection_difference((labels[0], boxes, scores[0]),
                                    (detections.class_ids, detections.boxes, detections.scores), 1e-2) is None


def tie_every_query_score(model):
    model.decoder.enc_score_head.weight.zero_()
    model.decoder.enc_score_head.bias.fill_(0.5)


def test_export_check_holds_when_every_query_score_ties(tmp_path):
    """All encoder positions score the same, so which queries a top-K takes is up to each kernel's ties."""
    checkpoint = make_checkpoint(tmp_path / "tied.pt", TINY_RTDETR, edit=tie_every_query_score)
    model, _ = load_model(checkpoint)
    positions = []
    hook = model.decoder.enc_score_head.register_forward_hook(lambda module, inputs, logits: positions.append(logits))
    with torch.no_grad():
        model.eval()(torch.rand(1, 3, 96, 96))
    hook.remove()
    assert positions[0].unique().numel() == 1  # every position ties
    path = export(checkpoint, tmp_path / "tied.onnx")["fp32"]  # the export's own check passes
    images = np.random.default_rng(3).random((2, 3, 96, 96), dtype=np.float32)
    pytorch = DeployedDetector(model, PostProcessor(TINY_RTDETR["num_top_queries"]))
    assert compare(pytorch, GraphRunner(path), images, np.array([[96, 96], [640, 480]], np.int64)) is None


def test_export_check_catches_one_changed_weight(tmp_path):
    """The shipped model's graph with one weight of its first decoder layer's output projection 10% larger is refused."""
    checkpoint = SHIPPED_CHECKPOINT
    path = export(checkpoint, tmp_path / "shipped.onnx")["fp32"]
    deployed, config, _ = deployed_detector(checkpoint)
    verify_export(deployed, path, config.input_size, dynamic_size=False)
    changed = onnx.load(str(path))
    weights = {initializer.name: initializer for initializer in changed.graph.initializer}
    feed_forward = next(node for node in changed.graph.node if node.name.startswith("/model/decoder/decoder/layers.0/linear2"))
    weight = next(weights[name] for name in feed_forward.input if name in weights)
    values = numpy_helper.to_array(weight).copy()
    values.flat[np.abs(values).argmax()] *= 1.1
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(changed, str(tmp_path / "changed.onnx"))
    with pytest.raises(DetrRosError, match="differs from PyTorch"):
        verify_export(deployed, tmp_path / "changed.onnx", config.input_size, dynamic_size=False)


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
