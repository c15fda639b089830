"""Official lyuwenyu/RT-DETR checkpoints (v1 and v2 layouts) convert to the same model, and files
that don't fit are refused with errors that name the problem."""

import copy
import pickle

import pytest
import torch

from detr_ros.errors import ConfigError, ModelFileError
from detr_ros.modeling.build import build_model
from detr_ros.modeling.checkpoint import load_checkpoint, load_model
from detr_ros.modeling.config import load_model_config
from detr_ros.modeling.convert import convert

TINY = "config/models/rtdetr_r18vd_tiny.yaml"


@pytest.fixture(scope="module")
def source_model():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    config = load_model_config(TINY)
    config.num_classes = 80  # so that the shipped COCO names apply
    config.num_points = [3, 2, 1]  # v2 per-level points
    return config, build_model(config).eval()


def _official_v1_keys(state_dict):
    """Our keys as rtdetr_pytorch (v1) names them: unnamed Sequential children."""
    renamed = {}
    for key, value in state_dict.items():
        for ours, theirs in ((".conv.", ".0."), (".norm.", ".1.")):
            if key.startswith("encoder.input_proj."):
                key = key.replace(ours, theirs)
        key = key.replace("decoder.enc_output.proj.", "decoder.enc_output.0.").replace("decoder.enc_output.norm.", "decoder.enc_output.1.")
        renamed[key] = value
    return renamed


def _outputs(model, images):
    with torch.no_grad():
        return model.eval()(images)


def test_official_v2_checkpoint_converts_to_the_same_model(source_model, tmp_path):
    config, model = source_model
    state = dict(model.state_dict())
    for i, layer in enumerate(model.decoder.decoder.layers):  # official v2 files carry this buffer
        state[f"decoder.decoder.layers.{i}.cross_attn.num_points_scale"] = layer.cross_attn.num_points_scale
    state["decoder.anchors"], state["decoder.valid_mask"] = torch.zeros(1, 1470, 4), torch.ones(1, 1470, 1).bool()
    torch.save({"model": state, "ema": {"module": state, "updates": 10}, "last_epoch": 3}, tmp_path / "rtdetrv2.pth")
    (tmp_path / "tiny.yaml").write_text(open(TINY).read())  # heads and queries are not in the weights

    summary = convert(tmp_path / "rtdetrv2.pth", tmp_path / "out.pt", config_path=tmp_path / "tiny.yaml")
    assert summary["kind"] == "rtdetr-official"
    assert summary["model_config"]["num_points"] == [3, 2, 1]
    assert summary["model_config"]["version"] == "v2"
    assert summary["class_names"][0] == "person" and summary["category_ids"][-1] == 90
    converted, checkpoint = load_model(tmp_path / "out.pt")
    images = torch.rand(1, 3, 224, 288)
    expected, actual = _outputs(model, images), _outputs(converted, images)
    assert torch.equal(expected["pred_logits"], actual["pred_logits"])
    assert torch.equal(expected["pred_boxes"], actual["pred_boxes"])
    assert len(checkpoint["extra"]["source_sha256"]) == 64


def test_official_v1_checkpoint_with_unnamed_layers_converts(tmp_path):
    torch.manual_seed(1)
    config = load_model_config(TINY)
    config.version, config.num_classes = "v1", 80
    model = build_model(config).eval()
    torch.save({"ema": {"module": _official_v1_keys(model.state_dict())}}, tmp_path / "rtdetr_v1.pth")
    (tmp_path / "labels.txt").write_text("\n".join(f"thing{i}" for i in range(80)))
    summary = convert(
        tmp_path / "rtdetr_v1.pth", tmp_path / "out.pt", labels_path=tmp_path / "labels.txt", config_path=TINY
    )
    assert summary["model_config"]["version"] == "v1"
    assert summary["class_names"][:2] == ["thing0", "thing1"] and summary["category_ids"][:2] == [0, 1]
    converted, _ = load_model(tmp_path / "out.pt")
    images = torch.rand(1, 3, 192, 192)
    assert torch.equal(_outputs(model, images)["pred_boxes"], _outputs(converted, images)["pred_boxes"])


def test_mismatched_weights_name_missing_unexpected_and_misshaped_keys(source_model, tmp_path):
    _, model = source_model
    state = dict(model.state_dict())
    del state["decoder.enc_score_head.bias"]
    state["decoder.extra_head.weight"] = torch.zeros(3)
    state["decoder.query_pos_head.layers.0.weight"] = torch.zeros(7, 4)
    torch.save({"model": state}, tmp_path / "broken.pth")
    with pytest.raises(ModelFileError) as error:
        convert(tmp_path / "broken.pth", tmp_path / "out.pt", config_path=TINY)
    message = str(error.value)
    assert "broken.pth" in message
    assert "missing keys: decoder.enc_score_head.bias" in message
    assert "unexpected keys: decoder.extra_head.weight" in message
    assert "mis-shaped keys: decoder.query_pos_head.layers.0.weight (file (7, 4), model (192, 4))" in message
    assert not (tmp_path / "out.pt").exists()


def test_unknown_content_and_class_count_are_refused(source_model, tmp_path):
    torch.save({"model": {"some.weight": torch.zeros(2)}}, tmp_path / "other.pth")
    with pytest.raises(ModelFileError, match="cannot tell what kind"):
        convert(tmp_path / "other.pth", tmp_path / "out.pt")
    config, model = source_model
    small = copy.deepcopy(config)
    small.num_classes = 5
    torch.save({"model": build_model(small).state_dict()}, tmp_path / "five.pth")
    with pytest.raises(ConfigError, match="5 classes and no names; pass --labels"):
        convert(tmp_path / "five.pth", tmp_path / "out.pt", config_path=TINY)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_with_executable_payload_is_refused(tmp_path):
    marker = tmp_path / "payload_ran"
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"model": {"w": _Payload(str(marker))}}, handle)
    torch.save({"model": {"w": _Payload(str(marker))}}, tmp_path / "evil_zip.pth")
    for name in ("evil.pth", "evil_zip.pth"):
        with pytest.raises(ModelFileError, match="refused to load"):
            convert(tmp_path / name, tmp_path / "out.pt")
        with pytest.raises(ModelFileError, match="refused to load"):
            load_checkpoint(tmp_path / name)
    assert not marker.exists()
