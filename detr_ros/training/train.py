"""Training a model on a COCO-format dataset folder: ``train`` (one call) and ``Trainer`` (one run).

The run folder receives:
- checkpoint.pt: resumable state (weights, EMA, optimiser, schedule, step, RNG), written
  atomically every ``checkpoint_every`` steps, at every epoch end and on Ctrl-C;
- model.pt: the final EMA weights as a plain detr_ros checkpoint (to evaluate, export, ship);
- metrics.csv (+ tensorboard/ when installed) and training_curves.png;
- model_config.yaml and train_config.yaml as used, labels.txt (class names, one per line).
Resuming continues exactly where checkpoint.pt stopped: the same step, data order,
augmentations, optimiser/schedule/EMA states and random streams, so a run killed and resumed
ends where an uninterrupted one does. ``init_from`` starts from another model's weights,
re-mapping the class rows by class name when the class sets differ.
Multi-process: launch with torchrun (DistributedDataParallel; NCCL on GPUs, gloo on CPU).
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch import distributed as dist
from torch.nn.parallel import DistributedDataParallel

from detr_ros.errors import ConfigError, DetrRosError, ModelFileError
from detr_ros.modeling.build import build_model
from detr_ros.modeling.checkpoint import (load_checkpoint, load_state_dict_checked, model_config_from_checkpoint,
                                          save_checkpoint)
from detr_ros.modeling.config import load_model_config
from detr_ros.training.criterion import SetCriterion
from detr_ros.training.dataset import DatasetFolders, collate
from detr_ros.training.evaluate import evaluate_pytorch
from detr_ros.training.finetune import remap_class_rows
from detr_ros.training.matcher import HungarianMatcher
from detr_ros.training.metrics_log import MetricsLog
from detr_ros.training.optim import build_ema, build_optimizer, build_scheduler
from detr_ros.training.sampler import ResumableBatchSampler
from detr_ros.training.train_config import TrainConfig, load_train_config
from detr_ros.training.transforms import resize_and_sanitize, train_augmentations

CHECKPOINT = "checkpoint.pt"
FINAL_MODEL = "model.pt"
LABELS = "labels.txt"  # class names in training-id order, one per line (the runtime's labels file)


@dataclass
class TrainResult:
    model: torch.nn.Module  # the trained weights (unwrapped from DDP)
    ema_model: torch.nn.Module  # the weights that are saved and shipped (EMA, or the model without EMA)
    step: int
    run_dir: Path


class _Distributed:
    """Rank and world size; a process group when launched by torchrun with more than one process."""

    def __init__(self, use_cuda):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.started_group = False
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
            self.started_group = True

    @property
    def is_main(self):
        return self.rank == 0

    def gather(self, value):
        """Every rank's ``value`` (a picklable object), on every rank."""
        if self.world_size == 1:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def close(self):
        if self.started_group:
            dist.destroy_process_group()


def _to_device(targets, device):
    return [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]


def _as_float(outputs):
    """Model outputs (maybe half precision under autocast) in float32 for the losses."""
    if torch.is_tensor(outputs):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, dict):
        return {k: (v if k == "dn_meta" else _as_float(v)) for k, v in outputs.items()}
    if isinstance(outputs, list):
        return [_as_float(v) for v in outputs]
    return outputs


def _rng_state(device):
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.zeros(0, dtype=torch.uint8)}


def _set_rng_state(state, device):
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and len(state["cuda"]):
        torch.cuda.set_rng_state(state["cuda"], device)


def _initial_weights(model, init_from, class_names):
    """Load ``init_from`` into ``model``, re-mapping class rows by name; prints what was kept."""
    checkpoint = load_checkpoint(init_from)
    weights, kept, new = remap_class_rows(checkpoint["state_dict"], model.state_dict(),
                                          checkpoint["class_names"], class_names, init_from)
    load_state_dict_checked(model, weights, str(init_from))
    print(f"initialised from {init_from}: {len(kept)} classes kept"
          + (f", {len(new)} new (fresh class rows): {', '.join(new)}" if new else ""))


class Trainer:
    """One training run. ``run()`` trains to the end and returns a TrainResult."""

    def __init__(self, model_config, train_config, data_dirs, run_dir, *, val_dir=None, init_from=None,
                 resume=False, device=None, progress=True):
        self.train_config = train_config
        self.data_dirs = [Path(data_dirs)] if isinstance(data_dirs, (str, Path)) else [Path(d) for d in data_dirs]
        self.val_dir, self.run_dir = val_dir and Path(val_dir), Path(run_dir)
        self.progress = progress
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.dist = _Distributed(self.device.type == "cuda")
        if self.device.type == "cuda" and self.dist.world_size > 1:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        resume_state = self._read_resume_state() if resume else None
        if resume_state is not None:
            model_config = model_config_from_checkpoint(resume_state, self.run_dir / CHECKPOINT)
        category_ids = resume_state["category_ids"] if resume_state is not None else None
        self.dataset = DatasetFolders(
            self.data_dirs, augment=train_augmentations(train_config.augmentation), finish=resize_and_sanitize,
            category_ids=category_ids)
        if self.dataset.num_degenerate_boxes and self.dist.is_main:
            print(f"{', '.join(map(str, self.data_dirs))}: dropped {self.dataset.num_degenerate_boxes} degenerate "
                  "boxes (no area or outside the image)")
        model_config.num_classes = self.dataset.num_classes
        model_config.validate()
        self.model_config = model_config
        self.use_amp = train_config.amp and self.device.type == "cuda"

        # The same seed on every rank builds identical initial weights; DDP checks they agree.
        torch.manual_seed(train_config.seed)
        model = build_model(model_config)
        if self.dist.world_size > 1 and self.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if init_from is not None and resume_state is None:
            _initial_weights(model, init_from, self.dataset.class_names)
        self.model = model.to(self.device)
        self.ema = build_ema(self.model, train_config.ema_decay, train_config.ema_warmup_steps) if train_config.ema_decay else None
        self.criterion = SetCriterion.from_model_config(model_config, HungarianMatcher(
            model_config.matcher_class_cost, model_config.matcher_bbox_cost, model_config.matcher_giou_cost,
            class_score="focal" if model_config.architecture == "rtdetr" else "softmax",
            alpha=model_config.matcher_alpha, gamma=model_config.matcher_gamma)).to(self.device)
        self.optimizer = build_optimizer(self.model, train_config)
        sizes = [(s, s) for s in train_config.multiscale_sizes] or [tuple(model_config.input_size)]
        self.sampler = ResumableBatchSampler(len(self.dataset), train_config.batch_size, sizes, train_config.seed,
                                             rank=self.dist.rank, world_size=self.dist.world_size)
        self.total_steps = train_config.epochs * self.sampler.steps_per_epoch
        self.scheduler = build_scheduler(self.optimizer, train_config, self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step, self.elapsed = 0, 0.0
        if resume_state is not None:
            self._restore(resume_state["extra"]["training"])
        else:
            # Each rank draws its own denoising noise.
            torch.manual_seed(train_config.seed + 1 + self.dist.rank)
        self.ddp_model = (DistributedDataParallel(self.model, find_unused_parameters=True)
                          if self.dist.world_size > 1 else self.model)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "model_config.yaml").write_text(yaml.safe_dump(model_config.to_dict(), sort_keys=False))
            (self.run_dir / "train_config.yaml").write_text(yaml.safe_dump(train_config.to_dict(), sort_keys=False))
            (self.run_dir / LABELS).write_text("".join(f"{name}\n" for name in self.dataset.class_names))
            self.log = MetricsLog(self.run_dir, resume_step=self.step if resume_state is not None else None)

    def _read_resume_state(self):
        path = self.run_dir / CHECKPOINT
        checkpoint = load_checkpoint(path)
        if "training" not in checkpoint["extra"]:
            raise ModelFileError(f"{path}: has no training state to resume from (is it a model.pt?)")
        return checkpoint

    def _restore(self, state):
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        for schedule in self.scheduler.lr_lambdas:  # the saved state carries the old length: --epochs may change it
            schedule.total_steps = self.total_steps
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed_s"])
        if len(state["rng"]) == self.dist.world_size:
            _set_rng_state(state["rng"][self.dist.rank], self.device)
        else:
            print(f"resuming {len(state['rng'])} ranks' run on {self.dist.world_size}: random streams restart")
            torch.manual_seed(self.train_config.seed + 1 + self.dist.rank + self.step)
        if self.dist.is_main:
            print(f"resumed {self.run_dir} at step {self.step} of {self.total_steps}")

    @property
    def shipped_model(self):
        return self.ema.module if self.ema is not None else self.model

    def save(self):
        """Write checkpoint.pt atomically (rank 0); every rank contributes its random state."""
        rng_states = self.dist.gather(_rng_state(self.device))
        if not self.dist.is_main:
            return
        training = {
            "step": self.step, "elapsed_s": self.elapsed, "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_states, "train_config": self.train_config.to_dict(),
        }
        save_checkpoint(self.run_dir / CHECKPOINT, model_config=self.model_config.to_dict(),
                        state_dict=self.shipped_model.state_dict(), class_names=self.dataset.class_names,
                        category_ids=self.dataset.category_ids, extra={"training": training})
        print(f"checkpoint step {self.step}", flush=True)

    def train_step(self, images, targets):
        """One optimiser step; returns the losses (detached floats)."""
        self.ddp_model.train()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            outputs = self.ddp_model(images, targets)
        losses = self.criterion(_as_float(outputs), targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise DetrRosError(f"the training loss became {loss.item()} at step {self.step}: "
                               "lower the learning rate or check the dataset's boxes")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.train_config.clip_max_norm > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train_config.clip_max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.dist.world_size > 1:
            # Batch-norm running statistics are updated from each rank's own batch (CPU has no
            # SyncBatchNorm); adopt rank 0's, as DDP itself does before every forward pass, so that
            # all ranks (and their EMAs) hold the same weights after every step.
            for buffer in self.model.buffers():
                dist.broadcast(buffer, 0)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        kind = self.criterion.class_loss
        return {"loss": loss.item(), "loss_class": losses[f"loss_{kind}"].item(),
                "loss_bbox": losses["loss_bbox"].item(), "loss_giou": losses["loss_giou"].item()}

    def evaluate(self):
        metrics = evaluate_pytorch(self.shipped_model, self.model_config, self.dataset.category_ids, self.val_dir,
                                   device=self.device)
        self.log.write(step=self.step, epoch=self.step / self.sampler.steps_per_epoch, elapsed_s=round(self.elapsed, 1),
                       AP=metrics["AP"], AP50=metrics["AP50"], AP75=metrics["AP75"])
        print(f"step {self.step}: held-out AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}", flush=True)
        return metrics

    def _out_of_time(self, time_limit_s):
        if time_limit_s is None:
            return False
        out_of_time = torch.tensor([float(self.elapsed >= time_limit_s)], device=self.device)
        if self.dist.world_size > 1:  # clocks differ between ranks: stop together when any is out of time
            dist.all_reduce(out_of_time, op=dist.ReduceOp.MAX)
        return bool(out_of_time.item())

    def _loader(self):
        self.sampler.start_at(self.step)
        return torch.utils.data.DataLoader(
            self.dataset, batch_sampler=self.sampler, collate_fn=collate, num_workers=self.train_config.num_workers,
            pin_memory=self.device.type == "cuda",
            # Worker seeds come from this generator, not from the training process's random stream.
            generator=torch.Generator().manual_seed(self.train_config.seed))

    def run(self, time_limit_s=None):
        """Train to the last step, or until ``time_limit_s`` seconds of training in all (resumes
        included) have passed: then checkpoint.pt is written and the run can be resumed or continued."""
        from tqdm import tqdm

        config, steps_per_epoch = self.train_config, self.sampler.steps_per_epoch
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (self.progress and self.dist.is_main),
                   unit="step", dynamic_ncols=True)
        batches = iter(self._loader())
        window_start, window_images = time.perf_counter(), 0
        try:
            while self.step < self.total_steps and not self._out_of_time(time_limit_s):
                started = time.perf_counter()
                images, targets = next(batches)
                losses = self.train_step(images.to(self.device), _to_device(targets, self.device))
                self.step += 1
                self.elapsed += time.perf_counter() - started
                window_images += len(images) * self.dist.world_size
                speed = window_images / max(1e-9, time.perf_counter() - window_start)
                bar.update(1)
                bar.set_postfix(loss=f"{losses['loss']:.3f}", img_s=f"{speed:.1f}")
                if self.dist.is_main and self.step % config.log_every == 0:
                    self.log.write(step=self.step, epoch=round(self.step / steps_per_epoch, 3),
                                   elapsed_s=round(self.elapsed, 1), lr=self.optimizer.param_groups[-1]["lr"],
                                   images_per_s=round(speed, 2), **{k: round(v, 5) for k, v in losses.items()})
                    window_start, window_images = time.perf_counter(), 0
                epoch_end = self.step % steps_per_epoch == 0
                if epoch_end or self.step % config.checkpoint_every == 0 or self.step == self.total_steps:
                    self.save()
                if (self.dist.is_main and self.val_dir is not None and epoch_end and config.eval_every
                        and (self.step // steps_per_epoch) % config.eval_every == 0 and self.step != self.total_steps):
                    self.evaluate()
        except KeyboardInterrupt:
            # Ranks of a distributed run are interrupted at different points: they cannot agree on
            # a last checkpoint, and resume from the latest periodic one instead.
            if self.dist.world_size == 1:
                self.save()
            raise
        finally:
            bar.close()
            del batches
        if self.step < self.total_steps:
            if self.step % config.checkpoint_every and self.step % steps_per_epoch:
                self.save()
            return TrainResult(self.model, self.shipped_model, self.step, self.run_dir)
        if self.dist.is_main:
            if self.val_dir is not None:
                self.evaluate()
            save_checkpoint(self.run_dir / FINAL_MODEL, model_config=self.model_config.to_dict(),
                            state_dict=self.shipped_model.state_dict(), class_names=self.dataset.class_names,
                            category_ids=self.dataset.category_ids,
                            extra={"step": self.step, "train_config": self.train_config.to_dict()})
            self.log.plot(self.run_dir / "training_curves.png")
            self.log.close()
            print(f"done: {self.step} steps in {self.elapsed / 60:.1f} min; weights in {self.run_dir / FINAL_MODEL}")
        return TrainResult(self.model, self.shipped_model, self.step, self.run_dir)

    def close(self):
        self.dist.close()


def train(model_config_path, data_dirs, *, val_dir=None, train_config_path=None, run_dir=None, init_from=None,
          resume=False, epochs=None, device=None, time_limit_s=None, progress=True):
    """Train the model of a model YAML on a dataset folder, or several as one; returns the TrainResult.

    train_config_path: training settings YAML (default: TrainConfig's); run_dir: the run folder
    (default runs/<model name>); resume: continue the run in run_dir where checkpoint.pt stopped,
    with its own training settings; epochs: replaces the settings' epochs; time_limit_s: stop,
    resumably, after this much training time.
    """
    if resume and init_from:
        raise ConfigError("resuming continues a run with its own weights; it cannot start from other weights")
    if resume and run_dir is None:
        raise ConfigError("resuming needs the run folder to continue")
    model_config = load_model_config(model_config_path)
    if resume:
        run_dir = Path(run_dir)
        train_config = TrainConfig.from_dict(
            load_checkpoint(run_dir / CHECKPOINT)["extra"].get("training", {}).get("train_config", {}),
            source=str(run_dir / CHECKPOINT))
    else:
        run_dir = Path(run_dir or Path("runs") / (model_config.name or Path(model_config_path).stem))
        train_config = load_train_config(train_config_path) if train_config_path else TrainConfig()
    if epochs is not None:
        train_config.epochs = epochs
        train_config.validate("epochs")
    trainer = Trainer(model_config, train_config, data_dirs, run_dir, val_dir=val_dir, init_from=init_from,
                      resume=resume, device=device, progress=progress)
    try:
        return trainer.run(time_limit_s=time_limit_s)
    finally:
        trainer.close()
