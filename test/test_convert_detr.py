"""``detr-ros convert`` routes DETR checkpoints (facebookresearch/detr and transformers) to the
DETR importer, detects their kind and names their classes."""

import argparse

import pytest
import torch
import torchvision
from torch import nn

from detr_ros.cli import main as cli_main
from detr_ros.modeling.checkpoint import load_model

transformers = pytest.importorskip("transformers")


def _prefixed(prefix, module):
    return {prefix + key: value for key, value in module.state_dict().items()}


def test_official_detr_checkpoint_converts_with_coco_names(tmp_path):
    torch.manual_seed(0)
    hidden = 32
    resnet = torchvision.models.resnet18(weights=None, norm_layer=torchvision.ops.misc.FrozenBatchNorm2d)
    weights = {k: v for k, v in _prefixed("backbone.0.body.", resnet).items() if ".fc." not in k}
    weights.update(_prefixed("transformer.encoder.layers.0.", nn.TransformerEncoderLayer(hidden, 4, 64)))
    weights.update(_prefixed("transformer.decoder.layers.0.", nn.TransformerDecoderLayer(hidden, 4, 64)))
    weights.update(_prefixed("transformer.decoder.norm.", nn.LayerNorm(hidden)))
    weights.update(_prefixed("input_proj.", nn.Conv2d(512, hidden, 1)))
    weights.update(_prefixed("query_embed.", nn.Embedding(5, hidden)))
    weights.update(_prefixed("class_embed.", nn.Linear(hidden, 92)))  # COCO category ids 0..90 + no-object
    for i, (n_in, n_out) in enumerate([(hidden, hidden), (hidden, hidden), (hidden, 4)]):
        weights.update(_prefixed(f"bbox_embed.layers.{i}.", nn.Linear(n_in, n_out)))
    torch.save({"model": weights, "args": argparse.Namespace(lr=1e-4)}, tmp_path / "detr-r18-test.pth")

    assert cli_main(["convert", str(tmp_path / "detr-r18-test.pth"), str(tmp_path / "detr.pt")]) == 0
    model, checkpoint = load_model(tmp_path / "detr.pt")
    assert checkpoint["extra"]["source_kind"] == "detr-official"
    assert checkpoint["model_config"]["architecture"] == "detr"
    assert checkpoint["class_names"][:2] == ["person", "bicycle"] and checkpoint["category_ids"][:2] == [1, 2]
    with torch.no_grad():
        out = model(torch.rand(1, 3, 128, 160))
    assert out["pred_logits"].shape == (1, 5, len(checkpoint["class_names"]) + 1)


def test_hf_detr_folder_converts_with_its_own_names(tmp_path):
    torch.manual_seed(0)
    backbone = transformers.ResNetConfig(
        depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic", out_features=["stage4"]
    )
    config = transformers.DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone, d_model=32,
        encoder_layers=1, decoder_layers=1, encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=4,
        decoder_attention_heads=4, num_queries=5, id2label={0: "cone", 1: "crate", 2: "pallet"},
    )
    reference = transformers.DetrForObjectDetection(config).eval()
    reference.save_pretrained(tmp_path)
    assert cli_main(["convert", str(tmp_path), str(tmp_path / "detr.pt")]) == 0
    model, checkpoint = load_model(tmp_path / "detr.pt")
    assert checkpoint["extra"]["source_kind"] == "detr-hf"
    assert checkpoint["class_names"] == ["cone", "crate", "pallet"]
    images = torch.rand(1, 3, 128, 160)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        expected = reference(pixel_values=(images - mean) / std)
        actual = model(images)  # our DETR normalises inside its forward
    assert (expected.logits - actual["pred_logits"]).abs().max() <= 1e-4
    assert (expected.pred_boxes - actual["pred_boxes"]).abs().max() <= 1e-4
