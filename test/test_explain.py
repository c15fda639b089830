"""``detr-ros explain`` on tiny random-weight DETR and RT-DETR checkpoints.

- each architecture gets its PNGs, one panel per selected detection (and per level for RT-DETR,
  per point for DETR's encoder);
- what is drawn is what the forward pass computed: the captured sampling points are those the
  deformable attention really used, and the attention rows are distributions;
- wrong arguments are refused with the reason.
"""

import cv2
import pytest
import torch

from detr_ros.cli import main
from detr_ros.modeling.build import build_model
from detr_ros.modeling.checkpoint import save_checkpoint
from detr_ros.modeling.config import ModelConfig
from detr_ros.synthetic import CATEGORY_IDS, CLASS_NAMES, SceneVideo
from detr_ros.tools import explain
from detr_ros.tools.checkpoint_detector import CheckpointDetector

TINY = {
    "rtdetr": dict(num_classes=len(CLASS_NAMES), num_queries=20, hidden_dim=32, input_size=[128, 128],
                   backbone_depth=18, backbone_width=0.25, encoder_hidden_dim=32, encoder_nhead=2,
                   encoder_dim_feedforward=64, decoder_layers=2, decoder_nhead=2, decoder_dim_feedforward=64,
                   num_points=[2, 3, 4], num_denoising=0, num_top_queries=20),
    "detr": dict(architecture="detr", num_classes=len(CLASS_NAMES), num_queries=8, hidden_dim=32,
                 input_size=[128, 160], detr_backbone="resnet18", nheads=2, enc_layers=1, dec_layers=2,
                 dim_feedforward=64),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain_models")
    torch.manual_seed(0)
    paths = {}
    for architecture, settings in TINY.items():
        config = ModelConfig.from_dict(dict(settings, name=f"tiny_{architecture}"))
        paths[architecture] = folder / f"{architecture}.pt"
        save_checkpoint(paths[architecture], model_config=config.to_dict(), state_dict=build_model(config).state_dict(),
                        class_names=list(CLASS_NAMES), category_ids=list(CATEGORY_IDS))
    return paths


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("explain_image") / "scene.png"
    cv2.imwrite(str(path), SceneVideo(240, 180, seed=2).frame(0)[0])
    return path


def panel_height(image_width=240, image_height=180):
    return explain.TITLE_HEIGHT + round(image_height * explain.PANEL_WIDTH / image_width)


def test_rtdetr_gets_sampling_points_per_detection_and_level(checkpoints, image_path, tmp_path):
    out = tmp_path / "rtdetr"
    assert main(["explain", str(checkpoints["rtdetr"]), str(image_path), "--out", str(out), "--detections", "2"]) == 0
    picture = cv2.imread(str(out / "rtdetr_sampling_points.png"))
    assert picture.shape == (2 * panel_height(), 3 * explain.PANEL_WIDTH, 3)  # 2 detections x 3 levels
    assert not (out / "detr_decoder_attention.png").exists()


def test_rtdetr_sampling_capture_is_what_the_decoder_used(checkpoints):
    detector = CheckpointDetector(checkpoints["rtdetr"])
    images = torch.rand(1, 3, 128, 128)
    calls = []
    with explain._captured_sampling(calls), torch.no_grad():
        captured_outputs = detector.model(images)
    assert len(calls) == TINY["rtdetr"]["decoder_layers"]
    last = calls[-1]
    assert last["num_points"] == [2, 3, 4]
    assert last["spatial_shapes"] == [(16, 16), (8, 8), (4, 4)]  # strides 8, 16, 32 of a 128x128 input
    assert tuple(last["locations"].shape) == (1, 20, 2, 9, 2)
    assert torch.allclose(last["weights"].sum(-1), torch.ones(1, 20, 2))  # softmax over all points of a head
    # Restored afterwards, and capturing changed nothing.
    from detr_ros.modeling import deformable_attention

    assert deformable_attention.sample_multi_scale.__name__ == "sample_multi_scale"
    with torch.no_grad():
        plain_outputs = detector.model(images)
    assert torch.equal(plain_outputs["pred_boxes"], captured_outputs["pred_boxes"])


def test_detr_gets_decoder_and_encoder_attention(checkpoints, image_path, tmp_path):
    out = tmp_path / "detr"
    assert main(["explain", str(checkpoints["detr"]), str(image_path), "--out", str(out), "--detections", "4",
                 "--points", "10,10", "120,90"]) == 0
    decoder = cv2.imread(str(out / "detr_decoder_attention.png"))
    assert decoder.shape == (2 * panel_height(), 3 * explain.PANEL_WIDTH, 3)  # 4 panels in rows of 3
    encoder = cv2.imread(str(out / "detr_encoder_attention.png"))
    assert encoder.shape == (panel_height(), 2 * explain.PANEL_WIDTH, 3)  # one panel per point


def test_detr_attention_rows_are_distributions_over_the_feature_map(checkpoints):
    detector = CheckpointDetector(checkpoints["detr"])
    layer = detector.model.transformer.decoder.layers[-1].multihead_attn
    calls = []
    with explain._captured_calls(layer, calls), torch.no_grad():
        detector.model(torch.rand(1, 3, 128, 160))
        weights = explain._attention_weights(layer, calls[-1])
    assert tuple(weights.shape) == (1, 8, 4 * 5)  # 8 queries over the stride-32 map of 128x160
    assert torch.allclose(weights.sum(-1), torch.ones(1, 8), atol=1e-5)


def test_wrong_arguments_are_refused(checkpoints, image_path, tmp_path, capsys):
    assert main(["explain", str(checkpoints["rtdetr"]), str(image_path), "--points", "5,5"]) == 2
    assert "--points applies to DETR" in capsys.readouterr().err
    assert main(["explain", str(checkpoints["detr"]), str(image_path), "--points", "500,5"]) == 2
    assert "outside the 240x180 image" in capsys.readouterr().err
    assert main(["explain", str(checkpoints["detr"]), str(tmp_path / "none.png")]) == 2
    assert "none.png: cannot be read" in capsys.readouterr().err
    assert main(["explain", str(image_path), str(image_path)]) == 2  # an image is no checkpoint
    assert main(["explain", str(checkpoints["rtdetr"]), str(image_path), "--out", str(tmp_path / "x"),
                 "--score-threshold", "1.0"]) == 1
    assert "nothing to draw" in capsys.readouterr().out
