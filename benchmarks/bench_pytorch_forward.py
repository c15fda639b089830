"""Eager PyTorch forward: detr_ros RT-DETR vs transformers RTDetrForObjectDetection, same weights.

R18-vd (transformers' R18 settings) at 640x640, batch 1, CPU, inference mode. The two models run
alternately in one process so that machine load affects both alike; the table gives the median
time of each and the ratio ours / transformers (below 1: ours is faster). Also writes JSON.

    python benchmarks/bench_pytorch_forward.py [--runs 20] [--threads 2] [--json PATH]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from results import headline, write_result


def build_pair(size):
    """Random-weight transformers R18-vd and the same weights imported by detr-ros convert."""
    import transformers

    from detr_ros.modeling.checkpoint import load_model
    from detr_ros.modeling.convert import convert

    torch.manual_seed(0)
    backbone = transformers.RTDetrResNetConfig(
        hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic", out_indices=[2, 3, 4]
    )
    config = transformers.RTDetrConfig(
        backbone_config=backbone, encoder_in_channels=[128, 256, 512], hidden_expansion=0.5, decoder_layers=3, num_labels=80
    )
    reference = transformers.RTDetrForObjectDetection(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        convert(Path(folder), Path(folder) / "converted.pt")
        ours, _ = load_model(Path(folder) / "converted.pt")
    images = torch.rand(1, 3, size, size)
    with torch.inference_mode():
        difference = (reference(pixel_values=images).pred_boxes - ours(images)["pred_boxes"]).abs().max().item()
    return reference, ours, images, difference


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed forwards of each model")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--json", type=Path, default=None,
                        help="result JSON (default: benchmarks/results/bench_pytorch_forward.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    reference, ours, images, difference = build_pair(args.size)
    models = {"detr_ros": lambda: ours(images), "transformers": lambda: reference(pixel_values=images)}
    times = {name: [] for name in models}
    with torch.inference_mode():
        for _ in range(args.warmup):
            for run in models.values():
                run()
        for i in range(args.runs):
            # Alternate which goes first so that neither always follows the other.
            order = list(models) if i % 2 == 0 else list(reversed(models))
            for name in order:
                start = time.perf_counter()
                models[name]()
                times[name].append((time.perf_counter() - start) * 1000)

    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["detr_ros"] / medians["transformers"]
    print(f"RT-DETR R18-vd eager forward, {args.size}x{args.size}, batch 1, CPU, {args.threads} threads, {args.runs} runs")
    print(f"{'model':<14}{'median ms':>12}{'min ms':>10}{'max ms':>10}")
    for name, values in times.items():
        print(f"{name:<14}{medians[name]:>12.1f}{min(values):>10.1f}{max(values):>10.1f}")
    print(f"ratio detr_ros / transformers: {ratio:.3f}   (max |boxes diff| {difference:.1e})")

    figures = {"input": [1, 3, args.size, args.size], "threads": args.threads, "runs": args.runs,
               "median_ms": medians, "times_ms": times, "ratio_ours_over_transformers": ratio,
               "max_abs_boxes_diff": difference, "transformers": sys.modules["transformers"].__version__}
    headlines = [headline("detr_ros / transformers, eager forward latency (ratio of medians)", f"{ratio:.3f}"),
                 headline("medians", f"{medians['detr_ros']:.1f} ms against {medians['transformers']:.1f} ms"),
                 headline("largest box difference between the two", f"{difference:.1e}")]
    write_result("bench_pytorch_forward", f"Eager PyTorch forward: RT-DETR-R18-vd {args.size}x{args.size}, batch 1, "
                 f"{args.threads} threads", figures, headlines, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
