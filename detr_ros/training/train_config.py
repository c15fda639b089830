"""Training hyper-parameters: a small dataclass loaded from YAML (config/train/*.yaml).

The model and its loss weights come from the model config; this file holds how to train:
optimiser, schedule, EMA, batches, augmentation, checkpoint and evaluation cadence.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from detr_ros.errors import ConfigError
from detr_ros.typed_config import config_from_mapping, read_yaml
from detr_ros.training.transforms import AugmentationConfig

SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    epochs: int = 12
    batch_size: int = 8
    lr: float = 1e-4
    backbone_lr: float = 1e-5
    weight_decay: float = 1e-4  # not applied to norms and biases
    warmup_steps: int = 500  # linear warm-up of every learning rate
    schedule: str = "cosine"  # after warm-up: "cosine" decay to min_lr_ratio, or "constant"
    min_lr_ratio: float = 0.05
    clip_max_norm: float = 0.1  # gradient clipping; 0 = off
    ema_decay: float = 0.9999  # 0 = no EMA
    ema_warmup_steps: int = 2000  # the EMA decay ramps up over about this many steps
    multiscale_sizes: list = field(default_factory=list)  # square sizes drawn per batch; [] = input_size
    num_workers: int = 2
    seed: int = 0
    checkpoint_every: int = 200  # steps between resumable checkpoints (and at every epoch end)
    eval_every: int = 1  # epochs between evaluations on --val; 0 = only at the end
    log_every: int = 10  # steps between rows of metrics.csv
    amp: bool = True  # mixed precision, CUDA only
    photometric_p: float = 0.5
    zoom_out_p: float = 0.5
    zoom_out_max: float = 2.0
    iou_crop_p: float = 0.8
    flip_p: float = 0.5

    def to_dict(self):
        return dataclasses.asdict(self)

    @property
    def augmentation(self):
        return AugmentationConfig(self.photometric_p, self.zoom_out_p, self.zoom_out_max, self.iou_crop_p, self.flip_p)

    @classmethod
    def from_dict(cls, values, source="train config"):
        return config_from_mapping(cls, values, source, "training settings")

    def validate(self, source="train config"):
        def check(condition, message):
            if not condition:
                raise ConfigError(f"{source}: {message}")

        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        check(self.lr > 0 and self.backbone_lr >= 0, f"lr must be > 0 and backbone_lr >= 0, got {self.lr}, {self.backbone_lr}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        check(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        check(0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        check(self.clip_max_norm >= 0, f"clip_max_norm must be >= 0, got {self.clip_max_norm}")
        check(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        check(self.ema_warmup_steps >= 1, f"ema_warmup_steps must be >= 1, got {self.ema_warmup_steps}")
        check(all(s > 0 and s % 32 == 0 for s in self.multiscale_sizes),
              f"multiscale_sizes must be positive multiples of 32, got {self.multiscale_sizes}")
        check(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        check(self.checkpoint_every >= 1 and self.log_every >= 1,
              f"checkpoint_every and log_every must be >= 1, got {self.checkpoint_every}, {self.log_every}")
        check(self.eval_every >= 0, f"eval_every must be >= 0, got {self.eval_every}")
        for name in ("photometric_p", "zoom_out_p", "iou_crop_p", "flip_p"):
            check(0 <= getattr(self, name) <= 1, f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        check(self.zoom_out_max >= 1, f"zoom_out_max must be >= 1, got {self.zoom_out_max}")


def load_train_config(path, _extending=()):
    """Read and validate a training YAML file -> TrainConfig. Errors name the file.

    ``extends: OTHER.yaml`` (relative to this file) starts from OTHER's settings, which the file's
    own settings replace: a second training stage states only what it changes.
    """
    path = Path(path)
    values = read_yaml(path, "train config")
    base = values.pop("extends", None) if isinstance(values, dict) else None
    if base is not None:
        base_path = path.parent / str(base)
        if base_path.resolve() in _extending or base_path.resolve() == path.resolve():
            raise ConfigError(f"{path}: extends {base_path}, which extends it again")
        inherited = load_train_config(base_path, (*_extending, path.resolve())).to_dict()
        values = {**inherited, **values}
    return TrainConfig.from_dict(values, source=str(path))
