"""detr_ros checkpoint files: round trip, atomic writes, and clear errors for bad files."""

import numpy as np
import pytest
import torch

from detr_ros.errors import ModelFileError
from detr_ros.modeling.build import build_model
from detr_ros.modeling.checkpoint import load_checkpoint, load_model, save_checkpoint
from detr_ros.modeling.config import load_model_config

TINY = "config/models/rtdetr_r18vd_tiny.yaml"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.set_num_threads(2)
    torch.manual_seed(0)
    config = load_model_config(TINY)
    model = build_model(config)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    names = [f"shape{i}" for i in range(config.num_classes)]
    save_checkpoint(
        path,
        model_config=config.to_dict(),
        state_dict=model.state_dict(),
        class_names=names,
        category_ids=list(range(10, 10 + config.num_classes)),
        extra={"epoch": 7, "history": [0.5, 0.25]},
    )
    return path, model.eval(), config, names


def test_round_trip_restores_the_model(saved):
    path, model, config, names = saved
    loaded, checkpoint = load_model(path)
    assert not loaded.training
    assert checkpoint["class_names"] == names
    assert checkpoint["category_ids"][0] == 10
    assert checkpoint["extra"] == {"epoch": 7, "history": [0.5, 0.25]}
    assert checkpoint["model_config"] == config.to_dict()
    images = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        assert torch.equal(model(images)["pred_boxes"], loaded(images)["pred_boxes"])
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left


def test_failed_save_keeps_the_previous_file(saved, tmp_path):
    path, model, config, names = saved
    target = tmp_path / "model.pt"
    target.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match=r"extra\['unsaveable'\] holds a object"):
        save_checkpoint(
            target, model_config=config.to_dict(), state_dict=model.state_dict(), class_names=names,
            category_ids=list(range(len(names))), extra={"unsaveable": object()},
        )
    assert target.read_bytes() == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_truncated_file_is_reported_with_its_path(saved, tmp_path):
    path, *_ = saved
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="truncated.pt: not a readable PyTorch file"):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 not a checkpoint at all")
    with pytest.raises(ModelFileError, match="garbage.pt"):
        load_model(garbage)
    with pytest.raises(ModelFileError, match="missing.pt: no such file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_other_files_are_not_taken_for_checkpoints(saved, tmp_path):
    path, model, config, names = saved
    torch.save({"model": model.state_dict()}, tmp_path / "official.pth")
    with pytest.raises(ModelFileError, match="not a detr_ros checkpoint.*detr-ros convert"):
        load_checkpoint(tmp_path / "official.pth")
    bad_config = config.to_dict() | {"backbone_depth": 19}
    save_checkpoint(
        tmp_path / "bad.pt", model_config=bad_config, state_dict=model.state_dict(),
        class_names=names, category_ids=list(range(len(names))),
    )
    with pytest.raises(ModelFileError, match="bad.pt.*backbone_depth must be one of"):
        load_model(tmp_path / "bad.pt")


def test_weights_of_another_model_are_named(saved, tmp_path):
    path, model, config, names = saved
    state = dict(model.state_dict())
    state["decoder.dec_score_head.0.weight"] = torch.zeros(3, config.hidden_dim)
    state.pop("encoder.lateral_convs.0.norm.running_var")
    save_checkpoint(
        tmp_path / "other.pt", model_config=config.to_dict(), state_dict=state,
        class_names=names, category_ids=list(range(len(names))),
    )
    with pytest.raises(ModelFileError) as error:
        load_model(tmp_path / "other.pt")
    assert "missing keys: encoder.lateral_convs.0.norm.running_var" in str(error.value)
    assert "mis-shaped keys: decoder.dec_score_head.0.weight (file (3, 96), model (6, 96))" in str(error.value)


@pytest.mark.parametrize("verb", ["convert", "eval", "export"])
def test_a_file_that_is_no_checkpoint_gets_one_line_from_every_command(verb, tmp_path, capsys):
    from detr_ros.cli import main

    text = tmp_path / "notes.pt"
    text.write_text("hello, this is a text file\n")
    noise = tmp_path / "noise.pth"
    noise.write_bytes(np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    pickled_noise = tmp_path / "pickled_noise.pt"  # a pickle's first bytes, then garbage: the unpickler fails
    pickled_noise.write_bytes(b"\x80\x02" + noise.read_bytes())
    for path in (text, noise, pickled_noise):
        arguments = {"convert": [path, tmp_path / "out.pt"], "eval": [path, tmp_path],
                     "export": [path, tmp_path / "out.onnx"]}[verb]
        assert main([verb, *map(str, arguments)]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"detr-ros {verb}: error: {path}: ") and len(error.strip().splitlines()) == 1, error
        assert "not a PyTorch checkpoint" in error or "refused to load" in error or "not a readable" in error
