"""Parity with Hugging Face transformers: RT-DETR (v1, v2) with random weights, imported by
``detr-ros convert``, gives the same logits and boxes as transformers, on square and rectangular inputs."""

import copy

import pytest
import torch
from scipy.optimize import linear_sum_assignment

transformers = pytest.importorskip("transformers")

from detr_ros.cli import main as cli_main  # noqa: E402
from detr_ros.modeling.checkpoint import load_model  # noqa: E402
from detr_ros.modeling.convert import convert  # noqa: E402

TOLERANCE = 1e-4
R18_BACKBONE = dict(hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic", embedding_size=64)
# ResNet-50-vd layout (bottlenecks, 3/4/6/3 blocks) at half width, with a narrow transformer.
SMALL_R50_BACKBONE = dict(hidden_sizes=[128, 256, 512, 1024], depths=[3, 4, 6, 3], layer_type="bottleneck", embedding_size=32)
SMALL_R50 = dict(
    encoder_in_channels=[256, 512, 1024], encoder_hidden_dim=128, encoder_ffn_dim=256, d_model=128,
    decoder_in_channels=[128, 128, 128], decoder_ffn_dim=256, decoder_layers=2, num_queries=100,
)


def randomize(model, seed):
    """Weights with real spread: transformers' initialisation leaves many outputs nearly constant."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if not tensor.is_floating_point() or name.endswith("n_points_scale"):
                continue
            if tensor.dim() > 1:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / tensor[0].numel() ** 0.5)
            elif name.endswith(("running_var", "weight")):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)


def build_hf(version, backbone, seed, **settings):
    backbone_config = transformers.RTDetrResNetConfig(out_indices=[2, 3, 4], **backbone)
    if version == "v2":
        config = transformers.RTDetrV2Config(backbone_config=backbone_config, num_labels=80, **settings)
        model = transformers.RTDetrV2ForObjectDetection(config)
    else:
        config = transformers.RTDetrConfig(backbone_config=backbone_config, num_labels=80, **settings)
        model = transformers.RTDetrForObjectDetection(config)
    randomize(model, seed)
    return model.eval()


def matched_differences(expected, actual):
    """(max |logits diff|, max |boxes diff|) between the two models' queries, paired one to one.

    Queries whose encoder scores tie exactly may come out in another order under other kernels;
    the decoder treats its queries as a set, so each query is paired with its closest counterpart.
    """
    def rows(logits, boxes):
        return torch.cat([logits[0], boxes[0]], dim=-1)

    cost = torch.cdist(rows(expected.logits, expected.pred_boxes), rows(actual["pred_logits"], actual["pred_boxes"]),
                       p=float("inf"))
    first, second = linear_sum_assignment(cost.numpy())
    logits_diff = (expected.logits[0, first] - actual["pred_logits"][0, second]).abs().max().item()
    boxes_diff = (expected.pred_boxes[0, first] - actual["pred_boxes"][0, second]).abs().max().item()
    return logits_diff, boxes_diff


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """name -> (transformers model, our model, summary) for each source model, built once."""
    torch.set_num_threads(2)
    sources = {
        "r18_v1": build_hf("v1", R18_BACKBONE, 0, encoder_in_channels=[128, 256, 512], hidden_expansion=0.5, decoder_layers=3),
        "small_r50_v1": build_hf("v1", SMALL_R50_BACKBONE, 1, **SMALL_R50),
        "small_r50_v2": build_hf("v2", SMALL_R50_BACKBONE, 2, **SMALL_R50),
        "small_r50_v2_discrete": build_hf("v2", SMALL_R50_BACKBONE, 3, decoder_method="discrete", **SMALL_R50),
    }
    result = {}
    for name, hf_model in sources.items():
        folder = tmp_path_factory.mktemp(name)
        hf_model.save_pretrained(folder)  # config.json + model.safetensors, as published on the Hub
        summary = convert(folder, folder / "converted.pt")
        ours, _ = load_model(folder / "converted.pt")
        result[name] = (hf_model, ours, summary)
    return result


def test_r18_matches_hf_settings(converted):
    hf_model, ours, summary = converted["r18_v1"]
    assert summary["kind"] == "rtdetr-hf"
    config = summary["model_config"]
    assert (config["backbone_depth"], config["encoder_expansion"], config["decoder_layers"]) == (18, 0.5, 3)
    assert config["version"] == "v1"
    assert 20.0e6 < summary["num_parameters"] < 20.4e6
    assert summary["class_names"][:3] == ["person", "bicycle", "car"] or len(summary["class_names"]) == 80


@pytest.mark.parametrize(
    "name, size",
    [
        ("r18_v1", (640, 640)),
        ("r18_v1", (480, 640)),
        ("small_r50_v1", (640, 640)),
        ("small_r50_v1", (480, 640)),
        ("small_r50_v2", (640, 640)),
        ("small_r50_v2", (640, 480)),
        ("small_r50_v2_discrete", (480, 640)),
    ],
)
def test_logits_and_boxes_match_transformers(converted, name, size):
    hf_model, ours, _ = converted[name]
    images = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = hf_model(pixel_values=images)
        actual = ours(images)
    # The comparison means something only if the outputs vary across queries and boxes.
    assert expected.pred_boxes[0, :, :2].std(0).min() > 0.01
    assert expected.logits.std() > 0.1
    logits_diff, boxes_diff = matched_differences(expected, actual)
    print(f"{name} {size}: max |logits diff| {logits_diff:.2e}, max |boxes diff| {boxes_diff:.2e}")
    assert logits_diff <= TOLERANCE and boxes_diff <= TOLERANCE


def test_comparison_sees_one_changed_weight(converted):
    hf_model, ours, _ = converted["r18_v1"]
    changed = copy.deepcopy(ours)
    weight = changed.decoder.decoder.layers[0].linear2.weight
    with torch.no_grad():
        weight.view(-1)[weight.abs().argmax()] *= 1.1
    images = torch.rand(1, 3, 320, 320, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = hf_model(pixel_values=images)
        assert max(matched_differences(expected, ours(images))) <= TOLERANCE
        assert max(matched_differences(expected, changed(images))) > TOLERANCE


def test_legacy_hf_key_names_convert_the_same(converted, tmp_path):
    """Checkpoints saved by transformers < 5 (as on the Hub) use out_proj, fc1/fc2 and encoder.encoder."""
    import json

    from safetensors.torch import save_file

    hf_model, ours, _ = converted["small_r50_v1"]
    legacy = {}
    for key, value in hf_model.state_dict().items():
        key = key.replace(".o_proj.", ".out_proj.").replace(".mlp.fc1.", ".fc1.").replace(".mlp.fc2.", ".fc2.")
        legacy[key.replace("encoder.aifi.", "encoder.encoder.")] = value.contiguous()
    save_file(legacy, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps(hf_model.config.to_dict()))
    assert cli_main(["convert", str(tmp_path / "model.safetensors"), str(tmp_path / "legacy.pt")]) == 0
    legacy_model, checkpoint = load_model(tmp_path / "legacy.pt")
    for key, value in ours.state_dict().items():
        assert torch.equal(value, legacy_model.state_dict()[key]), key
    assert checkpoint["extra"]["source_kind"] == "rtdetr-hf"
