"""Real training on a tiny synthetic set: the loss falls, kill + resume is exact, DDP keeps ranks equal,
truncated checkpoints are refused, fine-tuning re-maps the class head."""

import copy
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from detr_ros.cli import main as cli_main
from detr_ros.modeling.build import build_model
from detr_ros.modeling.checkpoint import load_checkpoint
from detr_ros.modeling.config import ModelConfig
from detr_ros.synthetic import SceneGenerator
from detr_ros.synthetic.dataset import write_dataset
from detr_ros.training.dataset import CocoDetection, SampleKey, collate
from detr_ros.training.train import Trainer
from detr_ros.training.train_config import TrainConfig
from detr_ros.training.transforms import resize_and_sanitize

REPO_ROOT = Path(__file__).resolve().parents[1]

# A very small RT-DETR (about 0.1M parameters) at 96x96: seconds per dozen steps on one core.
TINY_MODEL = {
    "name": "test_tiny", "architecture": "rtdetr", "num_classes": 6, "num_queries": 20, "hidden_dim": 32,
    "input_size": [96, 96], "backbone_depth": 18, "backbone_width": 0.125, "encoder_hidden_dim": 32,
    "encoder_nhead": 2, "encoder_dim_feedforward": 64, "encoder_expansion": 0.5, "encoder_depth_mult": 0.34,
    "decoder_layers": 2, "decoder_nhead": 2, "decoder_dim_feedforward": 64, "num_points": [2, 2, 2],
    "num_denoising": 12, "num_top_queries": 20,
}
QUIET_AUGMENTATION = {"photometric_p": 0.0, "zoom_out_p": 0.0, "iou_crop_p": 0.0, "flip_p": 0.5}
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_synth")
    generator = SceneGenerator(96, 96, seed=11, max_objects=3, min_size=16)
    write_dataset(folder, (generator.image(i) for i in range(16)), 96, 96, "test")
    return folder


@pytest.fixture(scope="module")
def model_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("configs") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_MODEL))
    return path


def _train_yaml(folder, **overrides):
    settings = {"epochs": 3, "batch_size": 4, "lr": 2e-3, "backbone_lr": 2e-3, "warmup_steps": 2,
                "ema_decay": 0.9, "ema_warmup_steps": 4, "num_workers": 0, "checkpoint_every": 100,
                "log_every": 1, "eval_every": 0, **QUIET_AUGMENTATION, **overrides}
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def _fixed_batch_loss(trainer, images, targets):
    """The criterion on a fixed batch, without denoising noise, on a copy (BN statistics untouched)."""
    model = copy.deepcopy(trainer.model).train()
    with torch.no_grad():
        return sum(trainer.criterion(model(images), targets).values()).item()


def test_training_steps_lower_the_loss(tiny_data, tmp_path):
    torch.set_num_threads(1)
    # 64 steps: over 32, how far this tiny model's loss falls varied from 0.63x to 0.87x with the seed.
    config = TrainConfig.from_dict({"epochs": 16, "batch_size": 4, "lr": 2e-3, "backbone_lr": 2e-3, "warmup_steps": 3,
                                    "schedule": "constant", "num_workers": 0, "checkpoint_every": 1000, "eval_every": 0, "log_every": 1,
                                    **QUIET_AUGMENTATION})
    trainer = Trainer(ModelConfig.from_dict(TINY_MODEL), config, tiny_data, tmp_path / "run", progress=False)
    dataset = CocoDetection.from_folder(tiny_data, finish=resize_and_sanitize)
    images, targets = collate([dataset[SampleKey(i, 0, (96, 96))] for i in range(8)])
    before = _fixed_batch_loss(trainer, images, targets)
    result = trainer.run()
    after = _fixed_batch_loss(trainer, images, targets)
    assert result.step == 64
    assert after < 0.8 * before, (before, after)
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch") and len(rows) == 1 + 64
    assert (tmp_path / "run" / "training_curves.png").stat().st_size > 1000
    assert (tmp_path / "run" / "labels.txt").read_text().splitlines() == trainer.dataset.class_names
    shipped = load_checkpoint(tmp_path / "run" / "model.pt")
    assert shipped["category_ids"] == [1, 2, 3, 5, 6, 7] and len(shipped["class_names"]) == 6
    assert "training" not in shipped["extra"]


def _train_arguments(model_yaml, data, train_yaml, out):
    return ["train", str(model_yaml), "--data", str(data), "--train-config", str(train_yaml), "--out", str(out),
            "--threads", "1", "--no-progress"]


def _cli_process(arguments):
    return [sys.executable, "-m", "detr_ros.cli", *arguments]


def _weights(path):
    checkpoint = load_checkpoint(path)
    return checkpoint["state_dict"], checkpoint["extra"]["training"]["model"]


def test_killed_run_resumes_exactly(tiny_data, model_yaml, tmp_path):
    # 12 steps, a resumable checkpoint after each; one data worker as in real runs.
    train_yaml = _train_yaml(tmp_path, checkpoint_every=1, num_workers=1)
    assert cli_main(_train_arguments(model_yaml, tiny_data, train_yaml, tmp_path / "whole")) == 0

    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(_cli_process(_train_arguments(model_yaml, tiny_data, train_yaml, killed_dir)),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=SUBPROCESS_ENV)
    for line in process.stdout:
        if line.startswith("checkpoint step 5"):
            process.send_signal(signal.SIGKILL)  # no clean-up, no last save
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    interrupted_at = load_checkpoint(killed_dir / "checkpoint.pt")["extra"]["training"]["step"]
    assert 5 <= interrupted_at < 12  # really stopped part-way
    assert not (killed_dir / "model.pt").exists()

    resumed = subprocess.run(_cli_process(["train", str(model_yaml), "--data", str(tiny_data), "--resume",
                                           str(killed_dir), "--threads", "1", "--no-progress"]),
                             capture_output=True, text=True, timeout=300, env=SUBPROCESS_ENV)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {killed_dir} at step {interrupted_at} of 12" in resumed.stdout

    for resumed_weights, whole_weights in zip(_weights(killed_dir / "checkpoint.pt"), _weights(tmp_path / "whole" / "checkpoint.pt")):
        assert resumed_weights.keys() == whole_weights.keys()
        worst = max((resumed_weights[k].double() - whole_weights[k].double()).abs().max().item() for k in whole_weights)
        assert worst <= 1e-6, worst
    # The metrics file tells one story: each step once.
    steps = [line.split(",")[0] for line in (killed_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(1, 13)]


def test_truncated_checkpoint_is_refused(tiny_data, model_yaml, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert cli_main(["train", str(model_yaml), "--data", str(tiny_data), "--train-config",
                     str(_train_yaml(tmp_path, epochs=1)), "--out", str(run_dir), "--no-progress"]) == 0
    checkpoint = run_dir / "checkpoint.pt"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert cli_main(["train", str(model_yaml), "--data", str(tiny_data), "--resume", str(run_dir)]) == 2
    error = capsys.readouterr().err
    assert str(checkpoint) in error and "truncated or corrupt" in error
    assert checkpoint.read_bytes() == data[: len(data) // 2]  # nothing was overwritten


DDP_WORKER = textwrap.dedent("""
    import sys, torch
    from detr_ros.modeling.config import ModelConfig
    from detr_ros.training.train import Trainer
    from detr_ros.training.train_config import TrainConfig
    import json
    settings = json.loads(sys.argv[1])
    torch.set_num_threads(1)
    trainer = Trainer(ModelConfig.from_dict(settings["model"]), TrainConfig.from_dict(settings["train"]),
                      settings["data"], settings["out"], progress=False)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.run()
    torch.save({"initial": initial, "final": result.model.state_dict(), "world_size": trainer.dist.world_size},
               f"{settings['out']}/rank{trainer.dist.rank}.pt")
    trainer.close()
""")


def test_ddp_on_cpu_keeps_both_ranks_identical(tiny_data, tmp_path):
    worker = tmp_path / "ddp_worker.py"
    worker.write_text(DDP_WORKER)
    settings = {"model": TINY_MODEL, "data": str(tiny_data), "out": str(tmp_path / "run"),
                "train": {"epochs": 2, "batch_size": 2, "lr": 2e-3, "backbone_lr": 2e-3, "warmup_steps": 1,
                          "num_workers": 0, "checkpoint_every": 100, "eval_every": 0, **QUIET_AUGMENTATION}}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             str(worker), json.dumps(settings)], capture_output=True, text=True, timeout=300,
                            env=SUBPROCESS_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / "run" / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    for key, value in ranks[0]["final"].items():
        assert torch.equal(value, ranks[1]["final"][key]), key
    changed = [k for k, v in ranks[0]["final"].items() if v.is_floating_point() and not torch.equal(v, ranks[0]["initial"][k])]
    assert len(changed) > 0.5 * len(ranks[0]["final"])
    # 16 images, 2 ranks x 2 per batch: 4 steps an epoch, each rank its own half of the data.
    assert load_checkpoint(tmp_path / "run" / "model.pt")["extra"]["step"] == 8


def test_fine_tuning_remaps_the_class_head_by_name(tiny_data, tmp_path):
    source_model = build_model(ModelConfig.from_dict(TINY_MODEL))
    from detr_ros.modeling.checkpoint import save_checkpoint
    from detr_ros.synthetic import CATEGORY_IDS, CLASS_NAMES

    source_path = tmp_path / "source.pt"
    save_checkpoint(source_path, model_config=ModelConfig.from_dict(TINY_MODEL).to_dict(),
                    state_dict=source_model.state_dict(), class_names=list(CLASS_NAMES), category_ids=list(CATEGORY_IDS))
    # A new dataset: two known classes (other ids, other order) and one the source never saw.
    coco = json.loads((tiny_data / "annotations.json").read_text())
    coco["categories"] = [{"id": 100, "name": "ring"}, {"id": 101, "name": "forklift"}, {"id": 102, "name": "bullseye"}]
    new_ids = [100, 101, 102]
    for i, annotation in enumerate(coco["annotations"]):
        annotation["category_id"] = new_ids[i % 3]
    new_data = tmp_path / "new"
    new_data.mkdir()
    (new_data / "annotations.json").write_text(json.dumps(coco))
    (new_data / "images").symlink_to(tiny_data / "images")

    torch.manual_seed(0)
    trainer = Trainer(ModelConfig.from_dict(TINY_MODEL), TrainConfig.from_dict({"num_workers": 0}), new_data,
                      tmp_path / "run", init_from=source_path, progress=False)
    assert trainer.model_config.num_classes == 3 and trainer.dataset.class_names == ["ring", "forklift", "bullseye"]
    torch.manual_seed(0)  # the trainer builds its fresh model from the training seed (0)
    fresh = build_model(ModelConfig.from_dict({**TINY_MODEL, "num_classes": 3})).state_dict()
    old, new = source_model.state_dict(), trainer.model.state_dict()
    ring, bullseye = CLASS_NAMES.index("ring"), CLASS_NAMES.index("bullseye")
    for key in ("decoder.enc_score_head.weight", "decoder.dec_score_head.1.weight", "decoder.dec_score_head.1.bias",
                "decoder.denoising_class_embed.weight"):
        assert new[key].shape == fresh[key].shape
        assert torch.equal(new[key][0], old[key][ring]) and torch.equal(new[key][2], old[key][bullseye]), key
        assert torch.equal(new[key][1], fresh[key][1]), key  # forklift: newly initialised
    assert not any(torch.equal(new["decoder.enc_score_head.weight"][1], row) for row in old["decoder.enc_score_head.weight"])
    assert torch.equal(new["decoder.denoising_class_embed.weight"][3], old["decoder.denoising_class_embed.weight"][6])
    assert torch.equal(new["backbone.conv1.conv1_1.conv.weight"], old["backbone.conv1.conv1_1.conv.weight"])


@pytest.mark.parametrize("text, message", [
    ("epochs: 2\nlearning_rate: 0.1\n", "unknown setting(s) learning_rate"),
    ("batch_size: eight\n", "batch_size must be an integer, got 'eight'"),
    ("schedule: linear\n", "schedule must be one of ('cosine', 'constant'), got 'linear'"),
    ("multiscale_sizes: [320, 330]\n", "multiscale_sizes must be positive multiples of 32"),
    ("epochs: [1\n", "is not valid YAML"),
])
def test_bad_train_config_is_named(tmp_path, text, message):
    from detr_ros.errors import ConfigError
    from detr_ros.training.train_config import load_train_config

    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_train_config(path)
    assert str(path) in str(error.value) and message in str(error.value)


@pytest.mark.parametrize("name", sorted(path.name for path in (REPO_ROOT / "config" / "train").glob("*.yaml")))
def test_shipped_train_configs_load(name):
    from detr_ros.training.train_config import load_train_config

    # Loading validates every setting, and follows ``extends`` to the stage before.
    config = load_train_config(REPO_ROOT / "config" / "train" / name)
    assert config.epochs >= 1 and config.lr > 0.0


def test_train_config_extends_another(tmp_path):
    from detr_ros.errors import ConfigError
    from detr_ros.training.train_config import load_train_config

    (tmp_path / "base.yaml").write_text("epochs: 3\nlr: 0.0005\nflip_p: 0.25\n")
    (tmp_path / "stage2.yaml").write_text("extends: base.yaml\nlr: 0.0002\n")
    config = load_train_config(tmp_path / "stage2.yaml")
    assert (config.epochs, config.lr, config.flip_p) == (3, 0.0002, 0.25)

    (tmp_path / "loop.yaml").write_text("extends: stage3.yaml\n")
    (tmp_path / "stage3.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="extends it again"):
        load_train_config(tmp_path / "loop.yaml")
