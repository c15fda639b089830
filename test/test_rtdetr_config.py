"""Model configs: the shipped YAML files build the published networks; bad settings are named."""

from pathlib import Path

import pytest
import torch

from detr_ros.errors import ConfigError
from detr_ros.modeling.build import build_model
from detr_ros.modeling.config import ModelConfig, load_model_config
from detr_ros.runtime.labels import coco_labels, load_labels

MODELS = Path(__file__).resolve().parents[1] / "config" / "models"
# Parameter counts in millions from the RT-DETR and RT-DETRv2 papers (COCO, 80 classes).
PUBLISHED_MILLIONS = {"r18vd": 20, "r34vd": 31, "r50vd": 42, "r50vd_m": 36, "r101vd": 76}


@pytest.mark.parametrize("prefix", ["rtdetr", "rtdetrv2"])
@pytest.mark.parametrize("variant", sorted(PUBLISHED_MILLIONS))
def test_official_configs_build_networks_of_the_published_size(prefix, variant):
    config = load_model_config(MODELS / f"{prefix}_{variant}.yaml")
    assert config.name == f"{prefix}_{variant}"
    assert config.version == ("v2" if prefix == "rtdetrv2" else "v1")
    with torch.device("meta"):  # sizes only; no memory, no initialisation cost
        model = build_model(config)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert round(millions) in (PUBLISHED_MILLIONS[variant], PUBLISHED_MILLIONS[variant] + 1)
    assert (config.loss_class_weight, config.loss_bbox_weight, config.loss_giou_weight) == (1.0, 5.0, 2.0)
    assert (config.matcher_class_cost, config.matcher_bbox_cost, config.matcher_giou_cost) == (2.0, 5.0, 2.0)


def test_round_trip_through_dict():
    config = load_model_config(MODELS / "rtdetr_r18vd_tiny.yaml")
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.backbone_width == 0.25 and config.input_size == [320, 320]


@pytest.mark.parametrize(
    "text, message",
    [
        ("backbone_depth: 19", "backbone_depth must be one of"),
        ("num_points: [4, 4]", "num_points must list 3 positive integers"),
        ("eval_idx: 6", "eval_idx must address one of the 6 decoder layers"),
        ("input_size: [640, 600]", "input_size must be"),
        ("num_classes: two", "num_classes must be an integer"),
        ("backbone_freeze_norm: 1", "backbone_freeze_norm must be true or false"),
        ("hidden_dims: 256", "unknown setting\\(s\\) hidden_dims"),
        ("version: v1\nnum_points: [4, 2, 1]", "version v1 has the same number of points"),
        ("architecture: yolo", "architecture must be one of"),
        ("- a list", "expected a mapping"),
        ("num_classes: [1", "not valid YAML"),
    ],
)
def test_bad_settings_are_named_with_the_file(tmp_path, text, message):
    path = tmp_path / "model.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=message) as error:
        load_model_config(path)
    assert str(path) in str(error.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read model config .*nope.yaml"):
        load_model_config(tmp_path / "nope.yaml")


def test_labels_files(tmp_path):
    names, ids = coco_labels()
    assert len(names) == 80 and names[0] == "person" and ids[0] == 1 and ids[-1] == 90
    assert names[ids.index(90)] == "toothbrush" and 12 not in ids
    (tmp_path / "names.txt").write_text("cone\n\ncrate\n")
    assert load_labels(tmp_path / "names.txt") == (["cone", "crate"], [0, 1])
    (tmp_path / "names.json").write_text('[{"id": 7, "name": "cone"}, {"id": 3, "name": "crate"}]')
    assert load_labels(tmp_path / "names.json") == (["cone", "crate"], [7, 3])
    (tmp_path / "bad.yaml").write_text("- {id: 1, name: cone}\n- {id: 1, name: crate}\n")
    with pytest.raises(ConfigError, match="bad.yaml: category ids repeat"):
        load_labels(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text("- {name: cone}\n")
    with pytest.raises(ConfigError, match="bad2.yaml: entry 0 must be"):
        load_labels(tmp_path / "bad2.yaml")
