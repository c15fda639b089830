"""Held-out mAP against training time: RT-DETR trained from scratch on synthetic scenes, on this CPU.

Generates a synthetic training set and a held-out set (another seed) with the project's
generator, trains with the project's Trainer for ``--minutes`` of training time, and
evaluates the EMA weights on the held-out set every ``--eval-minutes`` (evaluation time
is not counted as training time). Prints a table, writes JSON and a plot.

The learning rate stays constant after warm-up here (the length of a time-budgeted run is
not known in advance); the shipped model's recipe (models/README.md) decays it, so at
equal time it ends higher than these curves.

    python benchmarks/bench_training.py [--minutes 10] [--eval-minutes 2] [--threads 1]
        [--model config/models/rtdetr_r18vd_tiny.yaml] [--train-config config/train/synthetic_tiny.yaml]
        [--train-images 1000] [--val-images 100] [--out out/bench_training]
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def synthetic_split(folder, images, seed, size):
    """A synthetic dataset folder, generated unless it already holds this split."""
    from detr_ros.synthetic import SceneGenerator
    from detr_ros.synthetic.dataset import write_dataset

    stamp = folder / "split.json"
    wanted = {"images": images, "seed": seed, "size": size}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return folder
    generator = SceneGenerator(size[1], size[0], seed)
    write_dataset(folder, (generator.image(i) for i in range(images)), size[1], size[0], f"bench seed {seed}")
    stamp.write_text(json.dumps(wanted))
    return folder


def plot(points, path, title):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    minutes = [p["train_seconds"] / 60 for p in points]
    figure, axis = pyplot.subplots(figsize=(7, 4))
    axis.plot(minutes, [p["AP"] for p in points], "o-", label="AP 0.50:0.95")
    axis.plot(minutes, [p["AP50"] for p in points], "s-", label="AP50")
    axis.set(xlabel="training time (minutes)", ylabel="held-out mAP", ylim=(0, 1), title=title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    parser.add_argument("--eval-minutes", type=float, default=2.0, help="training time between evaluations")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core CPU)")
    parser.add_argument("--model", type=Path, default=REPO / "config/models/rtdetr_r18vd_tiny.yaml")
    parser.add_argument("--train-config", type=Path, default=REPO / "config/train/synthetic_tiny.yaml")
    parser.add_argument("--train-images", type=int, default=1000)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("out/bench_training"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from detr_ros.modeling.config import load_model_config
    from detr_ros.training.evaluate import evaluate_pytorch
    from detr_ros.training.train import Trainer
    from detr_ros.training.train_config import load_train_config

    model_config = load_model_config(args.model)
    size = tuple(model_config.input_size)
    train_dir = synthetic_split(args.out / "train", args.train_images, 1, size)
    val_dir = synthetic_split(args.out / "val", args.val_images, 2, size)
    train_config = load_train_config(args.train_config)
    train_config.schedule = "constant"
    train_config.epochs = 10_000  # the time budget ends the run
    train_config.checkpoint_every = 10_000_000
    trainer = Trainer(model_config, train_config, train_dir, args.out / "run", progress=False)

    points = []
    print(f"{'minutes':>8} {'steps':>6} {'images':>7} {'img/s':>6} {'AP':>6} {'AP50':>6}")
    while True:
        limit = min(args.minutes * 60, len(points) * args.eval_minutes * 60)  # 0 first: the untrained model
        trainer.run(time_limit_s=limit)
        evaluation_started = time.perf_counter()
        metrics = evaluate_pytorch(trainer.shipped_model, trainer.model_config, trainer.dataset.category_ids, val_dir)
        images = trainer.step * train_config.batch_size
        points.append({"train_seconds": round(trainer.elapsed, 1), "step": trainer.step, "images_seen": images,
                       "images_per_s": round(images / max(trainer.elapsed, 1e-9), 2),
                       **{k: metrics[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")},
                       "eval_seconds": round(time.perf_counter() - evaluation_started, 1)})
        p = points[-1]
        print(f"{p['train_seconds'] / 60:>8.1f} {p['step']:>6} {images:>7} {p['images_per_s']:>6.2f} "
              f"{p['AP']:>6.3f} {p['AP50']:>6.3f}", flush=True)
        if trainer.elapsed >= args.minutes * 60:
            break
    trainer.close()

    result = {
        "benchmark": "bench_training", "machine": platform.machine(), "processor": platform.processor(),
        "cpu_count": os.cpu_count(), "threads": args.threads, "torch": torch.__version__,
        "python": sys.version.split()[0], "model_config": str(args.model), "train_config": str(args.train_config),
        "schedule": "constant after warm-up", "train_images": args.train_images, "val_images": args.val_images,
        "image_size": list(size), "budget_minutes": args.minutes, "points": points,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_training.json").write_text(json.dumps(result, indent=2))
    plot(points, args.out / "bench_training.png", f"{model_config.name}: held-out mAP vs training time (CPU)")
    print(f"wrote {args.out / 'bench_training.json'} and {args.out / 'bench_training.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
