"""``detr-ros train CONFIG --data DIR [--val DIR] [--from CHECKPOINT] [--resume RUN_DIR]``.

Trains the model of CONFIG (a model YAML) on a COCO-format dataset folder into a run folder
(``--out``, default runs/<model name>): checkpoint.pt (resumable), model.pt (the final weights),
metrics.csv and training_curves.png, the configs as used and labels.txt (see detr_ros.training.train).
``--resume RUN_DIR`` continues exactly where its checkpoint.pt stopped; ``--from`` starts from
another model's weights, re-mapping the class rows by class name when the class sets differ.
Multi-process: launch with torchrun.
"""

import torch

from detr_ros.errors import ConfigError
from detr_ros.training.train import train


def add_arguments(parser):
    parser.add_argument("config", help="model config YAML, e.g. config/models/rtdetr_r18vd_tiny.yaml")
    parser.add_argument("--data", required=True, nargs="+", metavar="FOLDER",
                        help="training dataset folder (annotations.json, images/); several: trained on as one")
    parser.add_argument("--val", help="held-out dataset folder, evaluated (COCO mAP) at epoch ends")
    parser.add_argument("--train-config", help="training settings YAML (config/train/*.yaml); default: built-in")
    parser.add_argument("--out", help="run folder (default: runs/<model name>)")
    parser.add_argument("--from", dest="init_from", metavar="CHECKPOINT", help="start from these weights (fine-tune)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    parser.add_argument("--epochs", type=int, help="override the training config's epochs")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--threads", type=int, help="PyTorch CPU threads per process")
    parser.add_argument("--time-limit", type=float, metavar="MINUTES",
                        help="stop (resumably) after this much training time")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")


def run(args):
    if args.resume and args.init_from:
        raise ConfigError("--resume continues a run with its own weights; it cannot be combined with --from")
    if args.threads:
        torch.set_num_threads(args.threads)
    train(args.config, args.data, val_dir=args.val, train_config_path=args.train_config,
          run_dir=args.resume or args.out, init_from=args.init_from, resume=bool(args.resume), epochs=args.epochs,
          device=args.device, time_limit_s=args.time_limit * 60 if args.time_limit else None,
          progress=not args.no_progress)
    return 0
