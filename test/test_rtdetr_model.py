"""RT-DETR model: training outputs and denoising, any input size, eval_idx, RepVGG fusion, sampling."""

import copy
import math

import pytest
import torch

from detr_ros.export.deploy import deploy_for_inference
from detr_ros.modeling.build import build_model
from detr_ros.modeling.config import load_model_config
from detr_ros.modeling.deformable_attention import sample_multi_scale
from detr_ros.modeling.hybrid_encoder import sincos_position_embedding
from detr_ros.modeling.rtdetr_decoder import generate_anchors

TINY = "config/models/rtdetr_r18vd_tiny.yaml"


@pytest.fixture(scope="module")
def tiny_config():
    torch.set_num_threads(2)
    return load_model_config(TINY)


@pytest.fixture(scope="module")
def tiny_model(tiny_config):
    torch.manual_seed(0)
    return build_model(tiny_config)


def _targets(counts, num_classes):
    generator = torch.Generator().manual_seed(1)
    targets = []
    for count in counts:
        centres = torch.rand(count, 2, generator=generator) * 0.6 + 0.2
        sizes = torch.rand(count, 2, generator=generator) * 0.2 + 0.05
        labels = torch.randint(0, num_classes, (count,), generator=generator)
        targets.append({"labels": labels, "boxes": torch.cat([centres, sizes], dim=1)})
    return targets


def test_training_outputs_follow_the_contract(tiny_model, tiny_config):
    model = tiny_model.train()
    counts = [3, 0, 5]
    images = torch.rand(3, 3, 192, 192)
    out = model(images, _targets(counts, tiny_config.num_classes))
    queries, classes = tiny_config.num_queries, tiny_config.num_classes
    assert out["pred_logits"].shape == (3, queries, classes)
    assert out["pred_boxes"].shape == (3, queries, 4)
    assert len(out["aux_outputs"]) == tiny_config.decoder_layers - 1
    assert len(out["enc_aux_outputs"]) == 1
    assert out["enc_aux_outputs"][0]["pred_logits"].shape == (3, queries, classes)
    meta = out["dn_meta"]
    groups = meta["dn_num_group"]
    assert groups == tiny_config.num_denoising // max(counts)
    num_dn = 2 * max(counts) * groups
    assert meta["dn_num_split"] == [num_dn, queries]
    assert [len(idx) for idx in meta["dn_positive_idx"]] == [c * groups for c in counts]
    assert len(out["dn_aux_outputs"]) == tiny_config.decoder_layers
    for dn_out in out["dn_aux_outputs"]:
        assert dn_out["pred_logits"].shape == (3, num_dn, classes)
        assert dn_out["pred_boxes"].shape == (3, num_dn, 4)
    # Positive denoising queries of image 0 are the first 3 slots of each group of 2 * 5.
    assert meta["dn_positive_idx"][0].tolist() == [g * 10 + i for g in range(groups) for i in range(3)]


def test_backward_reaches_every_trainable_part(tiny_model, tiny_config):
    model = tiny_model.train()
    model.zero_grad()
    out = model(torch.rand(2, 3, 160, 160), _targets([2, 1], tiny_config.num_classes))
    terms = [out["pred_boxes"].sum(), out["pred_logits"].sigmoid().sum()]
    for key in ("aux_outputs", "enc_aux_outputs", "dn_aux_outputs"):
        terms += [o["pred_boxes"].sum() + o["pred_logits"].sigmoid().sum() for o in out[key]]
    sum(terms).backward()
    for name in (
        "backbone.conv1.conv1_1.conv.weight",
        "encoder.encoder.0.layers.0.linear1.weight",
        "encoder.pan_blocks.1.bottlenecks.0.conv1.conv.weight",
        "decoder.enc_score_head.weight",
        "decoder.denoising_class_embed.weight",
        "decoder.decoder.layers.0.cross_attn.sampling_offsets.weight",
        "decoder.dec_bbox_head.2.layers.2.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_denoising_attention_mask_separates_groups(tiny_model, tiny_config):
    from detr_ros.modeling.denoising import make_denoising_queries

    decoder = tiny_model.decoder
    content, boxes_unact, mask, meta = make_denoising_queries(
        _targets([2, 1], tiny_config.num_classes), tiny_config.num_classes, 7, decoder.denoising_class_embed, 12
    )
    groups, num_dn = meta["dn_num_group"], meta["dn_num_split"][0]
    assert (groups, num_dn) == (6, 24) and mask.shape == (31, 31)
    assert content.shape == (2, 24, tiny_config.hidden_dim) and boxes_unact.shape == (2, 24, 4)
    assert mask[24:, :24].all()  # matching queries never see denoising queries
    assert not mask[24:, 24:].any() and not mask[:24, 24:].any()
    for g in range(groups):
        block = slice(4 * g, 4 * g + 4)
        assert not mask[block, block].any()  # a group sees itself
        assert mask[block, :24].sum() == 4 * 20  # and none of the other 5 groups


@pytest.mark.parametrize("size", [(192, 192), (160, 256), (256, 160), (200, 136)])
def test_any_input_size_gives_valid_boxes(tiny_model, tiny_config, size):
    model = tiny_model.eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out["pred_logits"].shape == (2, tiny_config.num_queries, tiny_config.num_classes)
    assert torch.isfinite(out["pred_logits"]).all()
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()


def test_too_small_input_is_refused_with_the_reason(tiny_model):
    with torch.no_grad(), pytest.raises(ValueError, match="input too small: .* fewer than the 100 queries"):
        tiny_model.eval()(torch.rand(1, 3, 64, 64))


def test_anchors_follow_width_and_height_of_rectangular_maps():
    anchors, valid = generate_anchors([(2, 4)], eps=0.0)
    boxes = anchors.sigmoid()[0]
    # Row-major: the second anchor is one column to the right, the fifth one row down.
    assert torch.allclose(boxes[1], torch.tensor([1.5 / 4, 0.5 / 2, 0.05, 0.05]))
    assert torch.allclose(boxes[4], torch.tensor([0.5 / 4, 1.5 / 2, 0.05, 0.05]))
    assert valid.all()
    anchors, valid = generate_anchors([(2, 4), (1, 2)])
    assert anchors.shape == (1, 10, 4)
    assert math.isclose(anchors.sigmoid()[0, 8, 2].item(), 0.1, rel_tol=1e-6)  # level 1 doubles the size


def test_position_embedding_codes_row_then_column():
    embed = sincos_position_embedding(2, 3, 8)[0]
    # [sin(y), cos(y), sin(x), cos(x)] at frequencies 1 and 1/100 (temperature 10000, 2 per quarter).
    y, x = 1.0, 2.0  # flat index 5 in a 2 x 3 map
    expected = [math.sin(y), math.sin(y / 100), math.cos(y), math.cos(y / 100),
                math.sin(x), math.sin(x / 100), math.cos(x), math.cos(x / 100)]
    assert torch.allclose(embed[5], torch.tensor(expected), atol=1e-6)


def test_eval_idx_stops_at_the_chosen_layer(tiny_model):
    model = copy.deepcopy(tiny_model).eval()
    images = torch.rand(1, 3, 192, 192)
    model.decoder.decoder.eval_idx = 0
    with torch.no_grad():
        early = model(images)
    truncated = copy.deepcopy(model)
    truncated.decoder.decoder.layers = truncated.decoder.decoder.layers[:1]
    with torch.no_grad():
        reference = truncated(images)
        full = tiny_model.eval()(images)
    assert torch.equal(early["pred_boxes"], reference["pred_boxes"])
    assert not torch.allclose(early["pred_logits"], full["pred_logits"])


@pytest.mark.parametrize("size, fixed_size", [((192, 192), True), ((200, 168), False)])
def test_deploy_keeps_outputs(tiny_model, size, fixed_size):
    """RepVGG fused, linear maps folded into each other, shortcut pools as convolutions at a fixed size: same outputs."""
    model = copy.deepcopy(tiny_model).eval()
    generator = torch.Generator().manual_seed(3)
    for module in model.modules():  # non-trivial statistics make the folding meaningful
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    images = torch.rand(2, 3, *size, generator=generator)
    with torch.no_grad():
        features = model.backbone(images)
        before = model.encoder(features)
        trained = model(images)
        model = deploy_for_inference(model, size if fixed_size else None)
        after = model.encoder(features)
        deployed = model(images)
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.endswith("conv1.conv.weight") and "bottlenecks" in name for name in names)
    assert not any(name.startswith("decoder.input_proj.") or ".value_proj." in name for name in names)
    assert "encoder.input_proj.0.conv.weight" not in names and "encoder.input_proj.2.conv.weight" in names
    pools = [m for m in model.backbone.modules() if isinstance(m, torch.nn.AvgPool2d)]
    pool_convs = [m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (2, 2)]
    assert (not pools and len(pool_convs) == 3) if fixed_size else (len(pools) == 3 and not pool_convs)
    for a, b in zip(before, after):
        assert (a - b).abs().max() <= 1e-4
    # Rounding can swap two proposals of near-equal scores in the top-K: compare each column's values.
    for key in ("pred_logits", "pred_boxes"):
        assert (trained[key].sort(dim=1).values - deployed[key].sort(dim=1).values).abs().max() <= 1e-4


def test_bilinear_and_discrete_sampling_pick_cells_of_rectangular_maps():
    height, width = 2, 4
    value = torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)
    # Points at the centres of cells (row 1, column 3) and (row 0, column 1), then beyond the right edge.
    points = torch.tensor([[3.5 / width, 1.5 / height], [1.5 / width, 0.5 / height], [1.2, 0.25]])
    locations = points.reshape(1, 3, 1, 1, 2).expand(1, 3, 1, 1, 2).contiguous()
    weights = torch.ones(1, 3, 1, 1)
    bilinear = sample_multi_scale([value], [(height, width)], locations, weights, [1], "default")
    discrete = sample_multi_scale([value], [(height, width)], locations, weights, [1], "discrete")
    assert torch.allclose(bilinear[0, :2, 0], torch.tensor([7.0, 1.0]))
    # Discrete takes cell (round(y * H), round(x * W)), clamped: x to the last column (3), not to
    # the last row index (1) as the official code does, which would give 5 for the first point.
    assert discrete[0, :, 0].tolist() == [7.0, 6.0, 7.0]


def test_discrete_sampling_model_runs(tiny_config):
    config = copy.deepcopy(tiny_config)
    config.cross_attn_method = "discrete"
    config.num_points = [3, 2, 1]
    model = build_model(config).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 256, 320))
    assert out["pred_boxes"].shape == (1, config.num_queries, 4)
    assert not model.decoder.decoder.layers[0].cross_attn.sampling_offsets.weight.requires_grad
