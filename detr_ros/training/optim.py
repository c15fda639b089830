"""Optimiser, learning-rate schedule and weight EMA for training.

- AdamW with four parameter groups: backbone or not (the pretrained-style backbone learns
  at ``backbone_lr``) x decayed or not (norm scales and biases, 1-D tensors, get no weight
  decay: shrinking them towards 0 only fights the normalisation).
- Schedule per step: linear warm-up, then constant or cosine decay to ``min_lr_ratio``.
- EMA of weights and buffers (torch.optim.swa_utils.AveragedModel) with the RT-DETR decay
  ramp decay * (1 - exp(-updates / warmup)), so early averages follow the fast-moving model.
"""

import math

import torch
from torch.optim.swa_utils import AveragedModel


def parameter_groups(model, lr, backbone_lr, weight_decay):
    """AdamW param groups (only trainable parameters); each group has a "name" for logging."""
    groups = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        in_backbone = name.startswith("backbone.")
        decayed = parameter.ndim > 1
        key = ("backbone" if in_backbone else "head") + ("" if decayed else "_no_decay")
        group = groups.setdefault(key, {
            "name": key, "params": [],
            "lr": backbone_lr if in_backbone else lr,
            "weight_decay": weight_decay if decayed else 0.0,
        })
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


def build_optimizer(model, config):
    """AdamW over ``parameter_groups`` with the settings of a TrainConfig."""
    return torch.optim.AdamW(parameter_groups(model, config.lr, config.backbone_lr, config.weight_decay),
                             lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay)


class WarmupSchedule:
    """Multiplier of the base learning rates at a step: use with torch.optim.lr_scheduler.LambdaLR."""

    def __init__(self, total_steps, warmup_steps, schedule, min_ratio):
        self.total_steps, self.warmup_steps = total_steps, warmup_steps
        self.schedule, self.min_ratio = schedule, min_ratio

    def __call__(self, step):
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer, config, total_steps):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupSchedule(total_steps, config.warmup_steps, config.schedule, config.min_lr_ratio))


def build_ema(model, decay, warmup_steps):
    """AveragedModel keeping an exponential moving average of ``model``'s weights and buffers."""

    def average(averaged, current, num_averaged):
        d = decay * (1.0 - math.exp(-float(num_averaged) / warmup_steps))
        return averaged * d + current * (1.0 - d)

    return AveragedModel(model, avg_fn=average, use_buffers=True)
