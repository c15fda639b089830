"""Import of facebookresearch/detr checkpoints, checked against an independent build of that layout.

facebookresearch/detr's DETR is a Joiner(backbone, position encoding) whose backbone body is a
torchvision ResNet without avgpool/fc (FrozenBatchNorm2d: no num_batches_tracked), and a
transformer copied from torch.nn.Transformer: its encoder and decoder layers carry exactly the
parameters of torch.nn.TransformerEncoderLayer / TransformerDecoderLayer, plus a decoder LayerNorm.
We assemble such a checkpoint from those torch modules, not from our model, import it, and check
where every weight lands and that the imported parts compute what torch's modules compute.
"""
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from detr_ros.errors import ModelFileError
from detr_ros.modeling.build import build_model
from detr_ros.modeling.config import load_model_config
from detr_ros.modeling.import_detr import detr_config_and_state_dict_from_official
from detr_ros.runtime.labels import coco_labels

REPO_ROOT = Path(__file__).resolve().parents[1]
HIDDEN_DIM, NHEADS, FEEDFORWARD, ENC_LAYERS, DEC_LAYERS, QUERIES = 64, 8, 96, 2, 3, 7
COCO_ROWS = 92  # category ids 0..90 and no-object


def _prefixed(prefix, module):
    return {prefix + key: value for key, value in module.state_dict().items()}


def _official_parts(hidden_dim=HIDDEN_DIM, feedforward=FEEDFORWARD, enc_layers=ENC_LAYERS,
                    dec_layers=DEC_LAYERS, queries=QUERIES):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None, norm_layer=torchvision.ops.misc.FrozenBatchNorm2d)
    encoder_layers = [nn.TransformerEncoderLayer(hidden_dim, NHEADS, feedforward, dropout=0.0)
                      for _ in range(enc_layers)]
    decoder_layers = [nn.TransformerDecoderLayer(hidden_dim, NHEADS, feedforward, dropout=0.0)
                      for _ in range(dec_layers)]
    weights = {key: value for key, value in _prefixed("backbone.0.body.", resnet).items()
               if not key.startswith("backbone.0.body.fc.")}
    for index, layer in enumerate(encoder_layers):
        weights.update(_prefixed(f"transformer.encoder.layers.{index}.", layer))
    for index, layer in enumerate(decoder_layers):
        weights.update(_prefixed(f"transformer.decoder.layers.{index}.", layer))
    weights.update(_prefixed("transformer.decoder.norm.", nn.LayerNorm(hidden_dim)))
    weights.update(_prefixed("input_proj.", nn.Conv2d(2048, hidden_dim, 1)))
    weights.update(_prefixed("query_embed.", nn.Embedding(queries, hidden_dim)))
    weights.update(_prefixed("class_embed.", nn.Linear(hidden_dim, COCO_ROWS)))
    for index, (n_in, n_out) in enumerate([(hidden_dim, hidden_dim), (hidden_dim, hidden_dim), (hidden_dim, 4)]):
        weights.update(_prefixed(f"bbox_embed.layers.{index}.", nn.Linear(n_in, n_out)))
    for tensor in weights.values():  # norm statistics and affine terms, biases away from defaults
        if tensor.dim() == 1:
            tensor.add_(torch.rand_like(tensor) * 0.1)
    return resnet.eval(), encoder_layers, decoder_layers, weights


@pytest.fixture(scope="module")
def official():
    return _official_parts()


@pytest.fixture(scope="module")
def imported(official):
    return detr_config_and_state_dict_from_official({"model": official[3]})


@pytest.fixture(scope="module")
def our_model(imported):
    model = build_model(imported.model_config).eval()
    model.load_state_dict(imported.state_dict, strict=True)
    return model


def test_config_is_read_from_the_weights(imported):
    config = imported.model_config
    assert (config.name, config.detr_backbone, config.hidden_dim, config.nheads) == ("detr_r50", "resnet50", 64, 8)
    assert (config.enc_layers, config.dec_layers, config.dim_feedforward, config.num_queries) == (2, 3, 96, 7)


def test_coco_head_keeps_the_80_categories_and_no_object(official, imported, our_model):
    weights = official[3]
    coco_names, coco_ids = coco_labels()
    assert imported.category_ids == coco_ids and len(coco_ids) == 80
    assert imported.class_names == coco_names and imported.class_names[0] == "person"
    assert 12 not in imported.category_ids and 0 not in imported.category_ids
    assert imported.model_config.num_classes == 80
    rows = coco_ids + [COCO_ROWS - 1]
    assert torch.equal(our_model.class_embed.weight, weights["class_embed.weight"][rows])
    assert torch.equal(our_model.class_embed.bias, weights["class_embed.bias"][rows])


def test_every_other_weight_lands_under_the_official_module_path(official, our_model):
    ours = our_model.state_dict()
    for key, value in official[3].items():
        if key.startswith("class_embed."):
            continue
        our_key = key.replace("backbone.0.body.", "backbone.body.")
        assert torch.equal(ours[our_key], value), key


def test_imported_parts_compute_what_the_torch_modules_compute(official, our_model):
    resnet, encoder_layers, decoder_layers, _ = official
    torch.manual_seed(1)
    images = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        reference = resnet.layer4(resnet.layer3(resnet.layer2(resnet.layer1(
            resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(images))))))))
        assert torch.allclose(our_model.backbone(images), reference, atol=1e-5)

        # With zero position encodings DETR's layers are torch's post-norm layers (sequence first).
        src = torch.randn(1, 12, HIDDEN_DIM)
        tgt = torch.randn(1, QUERIES, HIDDEN_DIM)
        zeros_src, zeros_tgt = torch.zeros_like(src), torch.zeros_like(tgt)
        ours_encoded = our_model.transformer.encoder.layers[1](src, zeros_src)
        torch_encoded = encoder_layers[1].eval()(src.transpose(0, 1)).transpose(0, 1)
        assert torch.allclose(ours_encoded, torch_encoded, atol=1e-5)
        ours_decoded = our_model.transformer.decoder.layers[2](tgt, src, zeros_src, zeros_tgt)
        torch_decoded = decoder_layers[2].eval()(tgt.transpose(0, 1), src.transpose(0, 1)).transpose(0, 1)
        assert torch.allclose(ours_decoded, torch_decoded, atol=1e-5)


def test_forward_gives_the_contract_outputs(our_model):
    with torch.no_grad():
        out = our_model(torch.rand(2, 3, 128, 160))
    assert out["pred_logits"].shape == (2, QUERIES, 81)
    assert out["pred_boxes"].shape == (2, QUERIES, 4)
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()
    assert "aux_outputs" not in out  # only while training


def test_missing_unexpected_and_misshaped_keys_are_named(official):
    weights = dict(official[3])
    del weights["transformer.decoder.layers.1.linear2.weight"]
    weights["input_proj.weight"] = torch.zeros(HIDDEN_DIM, 1024, 1, 1)
    weights["backbone.1.row_embed.weight"] = torch.zeros(50, 32)  # a learned position encoding
    with pytest.raises(ModelFileError) as error:
        detr_config_and_state_dict_from_official({"model": weights})
    message = str(error.value)
    assert "missing keys: transformer.decoder.layers.1.linear2.weight" in message
    assert "unexpected keys: backbone.1.row_embed.weight" in message
    assert "mis-shaped keys: input_proj.weight [64, 1024, 1, 1] (expected [64, 2048, 1, 1])" in message


def test_full_size_official_layout_imports_to_the_shipped_detr_r50_config():
    """The published DETR-R50 shapes (256 wide, 6+6 layers, 2048 feed-forward, 100 queries)."""
    weights = _official_parts(hidden_dim=256, feedforward=2048, enc_layers=6, dec_layers=6, queries=100)[3]
    imported = detr_config_and_state_dict_from_official({"model": weights})
    shipped = load_model_config(REPO_ROOT / "config" / "models" / "detr_r50.yaml")
    assert imported.model_config.to_dict() == shipped.to_dict()
    build_model(shipped).load_state_dict(imported.state_dict, strict=True)


def test_non_tensor_entries_and_foreign_backbones_are_refused(official):
    with pytest.raises(ModelFileError, match="not tensors: epoch"):
        detr_config_and_state_dict_from_official({"model": dict(official[3], epoch=3)})
    without_layer4 = {key: value for key, value in official[3].items() if ".layer4." not in key}
    with pytest.raises(ModelFileError, match=r"bottleneck blocks \[3, 4, 6, 0\]"):
        detr_config_and_state_dict_from_official(without_layer4)


def test_training_returns_auxiliary_outputs_and_trains_only_layer2_to_layer4(our_model):
    our_model.train()
    try:
        out = our_model(torch.rand(1, 3, 64, 96))
    finally:
        our_model.eval()
    assert len(out["aux_outputs"]) == DEC_LAYERS - 1
    assert all(aux["pred_logits"].shape == (1, QUERIES, 81) for aux in out["aux_outputs"])
    trainable = {name.split(".")[1] for name, parameter in our_model.backbone.named_parameters()
                 if parameter.requires_grad}
    assert trainable == {"layer2", "layer3", "layer4"}
