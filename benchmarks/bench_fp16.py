"""FP16 export benchmark: what the FP16 file keeps of FP32, on the shipped model and on an R50-sized one.

Steps:
  1. the shipped model (models/synthetic_rtdetr.pt) is exported with FP16; COCO AP of the FP32 file,
     the FP16 file and the emulated-FP16 graph (every intermediate stored as FP16) on held-out
     synthetic scenes, through ``detr-ros eval``'s library function;
  2. transformers RTDetrForObjectDetection with RT-DETR-R50's settings and random weights of trained-like
     spread, saved as on the Hub, imported by ``detr-ros convert`` and exported at 640x640 with FP16;
     its FP16 file and emulated graph are compared with FP32 on synthetic scenes it has not been
     checked on, as the export's check compares them: detections on the queries FP32 selects, and
     how far their own query selection is from FP32's (random weights have no AP to measure, but
     their detections can be compared);
  3. export times, the operators kept FP32 and why, and CPU latency of FP16 against FP32 (the CPU
     runs most FP16 operators as FP32 between casts: this is no GPU figure).

Targets: AP within 0.5 points of FP32 (FP16 file and emulated graph); the export's own bounds on the
R50 comparison (see detr_ros.export.fp16).

    .venv/bin/python benchmarks/bench_fp16.py --work /tmp/bench_fp16
"""

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

import onnx
import torch
import transformers

from bench_export import spread_weights
from detr_ros.errors import DetrRosError
from detr_ros.export.fp16 import (BOX_P99_BOUND, SCORE_P99_BOUND, SELECTION_TOLERANCE, compare_with_fp32,
                                  emulated_fp16, network_inputs, prepared_for_fp16)
from detr_ros.export.onnx_export import export, write_model
from detr_ros.synthetic import SceneGenerator
from detr_ros.synthetic.dataset import write_dataset
from detr_ros.training.evaluate import evaluate_onnx
from results import headline, write_result

REPO = Path(__file__).resolve().parents[1]
AP_TOLERANCE_POINTS = 0.5


def build_r50(folder, seed):
    """transformers' RT-DETR-R50 (its default configuration, 80 COCO classes) with spread weights, saved as on the Hub."""
    model = transformers.RTDetrForObjectDetection(transformers.RTDetrConfig(num_labels=80)).eval()
    spread_weights(model, seed)
    model.save_pretrained(folder)


def timed_export(checkpoint, output, **options):
    started = time.perf_counter()
    result = export(checkpoint, output, fp16=True, **options)
    return result, time.perf_counter() - started


def with_emulation(result):
    """Write the emulated-FP16 graph of an export's FP32 file beside it; returns its path."""
    path = result["fp32"].with_name(result["fp32"].stem + ".emulated.onnx")
    emulated = emulated_fp16(prepared_for_fp16(onnx.load(str(result["fp32"]))), result["fp16_report"].plan)
    write_model(emulated, result["metadata"], path)
    return path


def kept_fp32(report):
    return dict(collections.Counter(why.split(":")[0] for why in report.plan.fp32_nodes.values()))


def shipped_ap(work, args):
    result, seconds = timed_export(REPO / "models" / "synthetic_rtdetr.pt", work / "shipped.onnx")
    emulated = with_emulation(result)
    data = work / "heldout"
    generator = SceneGenerator(320, 320, seed=4242)
    write_dataset(data, (generator.image(i) for i in range(args.heldout_images)), 320, 320, "held-out FP16 benchmark")
    ap = {name: evaluate_onnx(path, data, threads=args.threads)["AP"]
          for name, path in (("fp32", result["fp32"]), ("fp16", result["fp16"]), ("emulated", emulated))}
    return {"export_s": round(seconds, 1), "AP": ap, "fp16_AP_delta_points": 100 * (ap["fp16"] - ap["fp32"]),
            "emulated_AP_delta_points": 100 * (ap["emulated"] - ap["fp32"]), "kept_fp32": kept_fp32(result["fp16_report"]),
            "check": result["fp16_report"].figures()}


def bench_latency(work, model, other, args):
    report = work / f"bench_{Path(model).stem}.json"
    subprocess.run([sys.executable, "-m", "detr_ros.cli", "bench", str(model), "--compare", str(other), "--threads",
                    str(args.threads), "--batch", "1", "--iterations", str(args.iterations), "--json", str(report)],
                   check=True, cwd=REPO)
    return json.loads(report.read_text())["ratio"]


def r50_agreement(work, args):
    build_r50(work / "hf_r50", seed=0)
    subprocess.run([sys.executable, "-m", "detr_ros.cli", "convert", str(work / "hf_r50"), str(work / "r50.pt")],
                   check=True, cwd=REPO)
    try:
        result, seconds = timed_export(work / "r50.pt", work / "r50.onnx", size=(640, 640))
    except DetrRosError as error:  # the export's own check refused FP16: that is the finding
        return {"refused": str(error)}
    emulated = with_emulation(result)
    generator = SceneGenerator(640, 640, seed=777)
    images = network_inputs(result["metadata"], [generator.image(i)[0] for i in range(args.r50_scenes)])
    compared = compare_with_fp32(onnx.load(str(result["fp32"])), {
        name: onnx.load(str(path)) for name, path in (("fp16", result["fp16"]), ("emulated", emulated))}, images)
    return {"export_s": round(seconds, 1), "kept_fp32": kept_fp32(result["fp16_report"]),
            "check": result["fp16_report"].figures(), "fresh_scenes": args.r50_scenes,
            "vs_fp32": {name: found.figures() for name, found in compared.items()},
            "cpu_latency_fp16_over_fp32": bench_latency(work, result["fp16"], result["fp32"], args)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/detr_ros_bench_fp16"), help="scratch folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--heldout-images", type=int, default=200)
    parser.add_argument("--r50-scenes", type=int, default=8, help="fresh synthetic scenes for the R50 comparison")
    parser.add_argument("--iterations", type=int, default=5, help="timed runs a model for the CPU latency")
    parser.add_argument("--json", type=Path, help="result JSON (default: benchmarks/results/bench_fp16.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    summary = {"shipped": shipped_ap(args.work, args), "r50": r50_agreement(args.work, args),
               "bounds": {"AP_delta_points": AP_TOLERANCE_POINTS, "score_p99": SCORE_P99_BOUND,
                          "box_p99_of_image": BOX_P99_BOUND, "selection_gap": SELECTION_TOLERANCE}}
    print(json.dumps(summary, indent=2))
    shipped, r50 = summary["shipped"], summary["r50"]
    headlines = [
        headline(f"shipped model: AP FP32 / FP16 / emulated FP16, {args.heldout_images} held-out scenes",
                 " / ".join(f"{shipped['AP'][k]:.3f}" for k in ("fp32", "fp16", "emulated")),
                 f"FP16 within {AP_TOLERANCE_POINTS} points"),
        headline("shipped model: export with FP16 (320x320)", f"{shipped['export_s']:.0f} s"),
    ]
    if "refused" in r50:
        headlines.append(headline("R50 640x640: FP16 export", f"refused: {r50['refused'][:160]}"))
    for name in ("fp16", "emulated") if "refused" not in r50 else ():
        found = r50["vs_fp32"][name]
        headlines.append(headline(f"R50 640x640, {name} vs FP32 on {args.r50_scenes} fresh scenes, on FP32's queries: "
                                  "p99 score / box difference, unmatched", f"{found['score_p99']:.4f} / "
                                  f"{found['box_p99_of_image']:.3%} / {found['unmatched']}",
                                  f"<= {SCORE_P99_BOUND} / {BOX_P99_BOUND:.2%} / 0"))
        headlines.append(headline(f"R50 640x640, {name}'s own query selection: queries FP32 does not select, "
                                  "selection gap", f"{found['queries_moved']} / {found['selection_gap']:.3%}",
                                  f"gap <= {SELECTION_TOLERANCE:.1%}"))
    if "export_s" in r50:
        headlines.append(headline("R50 640x640: export with FP16", f"{r50['export_s']:.0f} s"))
    write_result("bench_fp16", f"FP16 export: shipped model (AP) and RT-DETR-R50 (random spread weights: no AP, "
                 f"detections compared with FP32), CPU, {args.threads} threads", summary, headlines, args.json)


if __name__ == "__main__":
    main()
