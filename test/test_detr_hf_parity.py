"""Our DETR with weights imported from Hugging Face DetrForObjectDetection computes what it computes.

The reference is a randomly initialised transformers model with its own (non-timm) ResNet-50
backbone, and one with the timm ResNet-50 that the Hub's facebook/detr-resnet-50 uses;
transformers and timm are test-only dependencies and nothing is downloaded.
"""
import json
import math

import pytest
import torch
import transformers
from safetensors.torch import load_file

from detr_ros.errors import ModelFileError
from detr_ros.modeling.build import build_model
from detr_ros.modeling.detr import IMAGENET_MEAN, IMAGENET_STD
from detr_ros.modeling.import_detr import detr_config_and_state_dict_from_hf

TOLERANCE = 1e-4
# Rows 0 and 3 stand for unused category ids, as "N/A" does in the Hub's COCO DETR.
ID2LABEL = {0: "N/A", 1: "cone", 2: "pallet", 3: "N/A", 4: "person", 5: "forklift"}


def _randomise(model):
    """Weights that make every part matter: variance-preserving convolutions and linears,
    frozen-BN statistics away from identity, small residual branches so a random ResNet-50
    neither explodes nor collapses."""
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if tensor.dim() == 4:
                torch.nn.init.kaiming_normal_(tensor, nonlinearity="relu")
            elif tensor.dim() == 2:
                tensor.normal_(0, 1 / math.sqrt(tensor.shape[1]))
            elif name.endswith("running_var"):
                tensor.uniform_(0.8, 1.25)
            elif name.endswith(("running_mean", "bias")):
                tensor.uniform_(-0.1, 0.1)
            elif name.endswith(("layer.2.normalization.weight", "bn3.weight")):  # last BN of a residual branch
                tensor.uniform_(0.1, 0.3)
            elif name.endswith("weight"):
                tensor.uniform_(0.8, 1.2)


@pytest.fixture(scope="module")
def hf_model():
    torch.manual_seed(0)
    config = transformers.DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False,
        backbone_config=transformers.ResNetConfig(out_features=["stage4"]).to_dict(),  # ResNet-50
        d_model=64, encoder_layers=2, decoder_layers=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        encoder_attention_heads=4, decoder_attention_heads=4, num_queries=12, id2label=ID2LABEL)
    model = transformers.DetrForObjectDetection(config).eval()
    _randomise(model)
    return model


@pytest.fixture(scope="module")
def imported(hf_model):
    return detr_config_and_state_dict_from_hf(hf_model.state_dict(), hf_model.config.to_dict())


@pytest.fixture(scope="module")
def our_model(imported):
    model = build_model(imported.model_config).eval()
    model.load_state_dict(imported.state_dict, strict=True)
    return model


def test_config_and_classes_come_from_the_hf_model(imported):
    config = imported.model_config
    assert (config.architecture, config.detr_backbone, config.detr_dilation) == ("detr", "resnet50", False)
    assert (config.hidden_dim, config.nheads, config.enc_layers, config.dec_layers) == (64, 4, 2, 2)
    assert (config.dim_feedforward, config.num_queries) == (128, 12)
    assert imported.category_ids == [1, 2, 4, 5]
    assert imported.class_names == ["cone", "pallet", "person", "forklift"]
    assert config.num_classes == 4


@pytest.mark.parametrize("height, width", [(320, 320), (256, 384)])
def test_logits_and_boxes_match_transformers(hf_model, our_model, imported, height, width):
    torch.manual_seed(height + width)
    images = torch.rand(2, 3, height, width)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        reference = hf_model(pixel_values=(images - mean) / std)  # transformers normalises outside the model
        ours = our_model(images)

    kept_rows = imported.category_ids + [len(ID2LABEL)]  # real classes, then no-object
    reference_logits = reference.logits[..., kept_rows]
    assert ours["pred_logits"].shape == (2, 12, 5)
    assert ours["pred_boxes"].shape == (2, 12, 4)
    assert (ours["pred_logits"] - reference_logits).abs().max().item() <= TOLERANCE
    assert (ours["pred_boxes"] - reference.pred_boxes).abs().max().item() <= TOLERANCE
    # The comparison means something only if the outputs depend on the image.
    assert (reference_logits[0] - reference_logits[1]).abs().max().item() > 100 * TOLERANCE
    assert (reference.pred_boxes[0] - reference.pred_boxes[1]).abs().max().item() > 10 * TOLERANCE


def test_saved_checkpoint_layout_imports_to_the_same_weights(hf_model, imported, tmp_path):
    """save_pretrained writes the Hub layout (conv_encoder, out_proj, fc1), not the in-memory one."""
    hf_model.save_pretrained(tmp_path)
    on_disk = load_file(tmp_path / "model.safetensors")
    assert any(key.startswith("model.backbone.conv_encoder.") for key in on_disk)
    from_disk = detr_config_and_state_dict_from_hf(on_disk, json.loads((tmp_path / "config.json").read_text()))

    assert from_disk.model_config == imported.model_config
    assert from_disk.category_ids == imported.category_ids
    assert from_disk.state_dict.keys() == imported.state_dict.keys()
    for key, value in imported.state_dict.items():
        assert torch.equal(from_disk.state_dict[key], value), key


def test_missing_projection_and_misshaped_head_are_named(hf_model):
    weights = dict(hf_model.state_dict())
    del weights["model.decoder.layers.1.encoder_attn.k_proj.weight"]
    weights["bbox_predictor.layers.2.weight"] = torch.zeros(5, 64)
    with pytest.raises(ModelFileError) as error:
        detr_config_and_state_dict_from_hf(weights, hf_model.config.to_dict())
    message = str(error.value)
    assert "missing keys: transformer.decoder.layers.1.multihead_attn.in_proj_weight" in message
    assert "model.decoder.layers.1.encoder_attn.q_proj.weight" in message.split("unexpected keys:")[1]
    assert "bbox_predictor.layers.2.weight [5, 64] (expected [4, 64])" in message


def test_unsupported_backbone_settings_are_refused(hf_model):
    config = hf_model.config.to_dict()
    config["backbone_config"] = dict(config["backbone_config"], downsample_in_bottleneck=True)
    with pytest.raises(ModelFileError, match="downsample_in_bottleneck"):
        detr_config_and_state_dict_from_hf(hf_model.state_dict(), config)


def test_timm_backbone_checkpoint_in_hub_layout_matches_transformers(tmp_path):
    """facebook/detr-resnet-50 on the Hub: timm ResNet-50, config.json with use_timm_backbone and no
    backbone_config (transformers 4 wrote it so), weights in the on-disk layout."""
    torch.manual_seed(2)
    config = transformers.DetrConfig(
        use_timm_backbone=True, use_pretrained_backbone=False, backbone="resnet50",
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=64, decoder_ffn_dim=64,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=5, num_labels=3)
    hf_timm = transformers.DetrForObjectDetection(config).eval()
    _randomise(hf_timm)
    hf_timm.save_pretrained(tmp_path)
    hub_config = json.loads((tmp_path / "config.json").read_text())
    hub_config.update(backbone_config=None, use_timm_backbone=True, backbone="resnet50", dilation=False)
    imported = detr_config_and_state_dict_from_hf(load_file(tmp_path / "model.safetensors"), hub_config)
    ours = build_model(imported.model_config).eval()
    ours.load_state_dict(imported.state_dict, strict=True)

    images = torch.rand(1, 3, 224, 288)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        reference = hf_timm(pixel_values=(images - mean) / std)
        out = ours(images)
    assert (imported.category_ids, imported.class_names) == ([0, 1, 2], None)  # LABEL_<i> names none
    assert (out["pred_logits"] - reference.logits).abs().max().item() <= TOLERANCE
    assert (out["pred_boxes"] - reference.pred_boxes).abs().max().item() <= TOLERANCE
    assert reference.logits.std().item() > 100 * TOLERANCE
