"""GPU check: the CUDA and TensorRT providers on FP32, FP16 and INT8 files, against the CPU.

For each model (the shipped one, 320x320; transformers' RT-DETR-R50 with spread random weights,
640x640) the export writes an FP32 file, its FP16 file and a symmetric INT8 file (the kind TensorRT
runs). Every file runs on the CPU (the reference), then on each GPU provider through the runtime's
Detector, and the check reports per provider and file:
  - the session's start time with an empty cache (for TensorRT: the engine build);
  - inference latency percentiles (Detector timings, batch 1);
  - parity: detections against the CPU run of the same file and against the CPU run of the FP32
    file (detr_ros.export.agreement), over synthetic scenes.

``benchmarks/gpu_check.sh`` runs it on a GPU machine (model files in the project's environment,
the GPU part in a virtual environment of its own). ``--cpu-only`` runs the CPU part alone: making
the files, the CPU reference run, the parity computation and the JSON.

    python benchmarks/gpu_check.py --work out/gpu_check [--cpu-only] [--models shipped r50] [--files-only]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from detr_ros.errors import DetrRosError
from detr_ros.export.agreement import agreement
from detr_ros.runtime import Detector
from detr_ros.synthetic import SceneGenerator
from detr_ros.tools.bench import summarise
from results import headline, write_result

REPO = Path(__file__).resolve().parents[1]
MODELS = {"shipped": (320, 320), "r50": (640, 640)}
VARIANTS = ("fp32", "fp16", "int8")
SCENES = 8
CALIBRATION_IMAGES = 8


def model_files(work, name):
    """{variant: path} of one model's files under WORK/models."""
    folder = work / "models"
    return {"fp32": folder / f"{name}.onnx", "fp16": folder / f"{name}.fp16.onnx", "int8": folder / f"{name}.int8.onnx"}


def make_model_files(work, name):
    """Export one model with FP16 and symmetric INT8 (needs PyTorch, so the project's environment)."""
    from bench_fp16 import build_r50  # PyTorch and transformers: only here
    from detr_ros.cli import main as detr_ros
    from detr_ros.export.onnx_export import export

    height, width = MODELS[name]
    calibration = work / f"calibration_{height}x{width}"
    if not calibration.is_dir():
        assert detr_ros(["synth", str(calibration), "--images", str(CALIBRATION_IMAGES), "--seed", "99",
                         "--size", f"{width}x{height}"]) == 0
    checkpoint = REPO / "models" / "synthetic_rtdetr.pt"
    if name == "r50":
        checkpoint = work / "r50.pt"
        build_r50(work / "hf_r50", seed=0)
        assert detr_ros(["convert", str(work / "hf_r50"), str(checkpoint)]) == 0
    started = time.perf_counter()
    options = dict(size=(height, width), int8_calibration=calibration, num_calibration_images=CALIBRATION_IMAGES,
                   int8_symmetric=True)
    try:
        export(checkpoint, model_files(work, name)["fp32"], fp16=True, **options)
        refused = None
    except DetrRosError as error:  # FP16 refused by the export's own check: the other files still run
        refused = str(error)
        export(checkpoint, model_files(work, name)["fp32"], **options)
    return {"export_s": round(time.perf_counter() - started, 1), "fp16_refused": refused}


def detector(path, provider, cache_dir):
    # The model's own answers, every one kept: parity compares whole detection sets.
    return Detector(path, (provider,), cache_dir=cache_dir, score_threshold=0.0, max_detections=1000,
                    duplicate_iou=1.0, cache_optimized_model=False)


def run_file(path, provider, scenes, iterations):
    """(figures, per-scene detections) of one file on one provider, started with an empty cache."""
    with tempfile.TemporaryDirectory(prefix="detr_ros_gpu_check_") as cache:
        started = time.perf_counter()
        model = detector(path, provider, cache)
        start_s = time.perf_counter() - started
        found = [model.detect(scene) for scene in scenes]
        samples = []
        for index in range(iterations):
            timings = {}
            model.detect(scenes[index % len(scenes)], timings=timings)
            samples.append(timings["inference_s"])
    figures = {"provider": model.provider, "start_s": round(start_s, 2),
               "inference": summarise({"inference": samples}, 1)["inference"]}
    return figures, [(d.class_ids, d.boxes, d.scores) for d in found]


def check_model(work, name, providers, iterations):
    height, width = MODELS[name]
    generator = SceneGenerator(width, height, seed=2024)
    scenes = [generator.image(index)[0] for index in range(SCENES)]
    sizes = [(width, height)] * len(scenes)
    files = model_files(work, name)
    report, reference = {}, {}
    for provider in providers:
        for variant in VARIANTS:
            if not files[variant].is_file():
                report[f"{provider}/{variant}"] = {"error": f"no {variant} file (see export)"}
                continue
            try:
                figures, found = run_file(files[variant], provider, scenes, iterations)
            except Exception as error:  # a provider that cannot run a file is a finding, not the end of the check
                report[f"{provider}/{variant}"] = {"error": str(error).splitlines()[0]}
                print(f"{name} {provider}/{variant}: {report[f'{provider}/{variant}']['error']}", flush=True)
                continue
            if provider == "cpu":
                reference[variant] = found
            figures["vs_cpu_same_file"] = agreement(reference[variant], found, sizes).figures()
            figures["vs_cpu_fp32"] = agreement(reference["fp32"], found, sizes).figures()
            report[f"{provider}/{variant}"] = figures
            print(f"{name} {provider}/{variant}: start {figures['start_s']} s, inference p50 "
                  f"{figures['inference']['p50_ms']} ms, vs CPU same file {figures['vs_cpu_same_file']}, "
                  f"vs CPU FP32 {figures['vs_cpu_fp32']}", flush=True)
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=REPO / "out" / "gpu_check", help="model files and results")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS, reverse=True))
    parser.add_argument("--cpu-only", action="store_true", help="the CPU reference and parity alone (no GPU needed)")
    parser.add_argument("--files-only", action="store_true", help="make the model files and stop")
    parser.add_argument("--iterations", type=int, default=50, help="timed inferences a file and provider")
    parser.add_argument("--json", type=Path, help="result JSON (default: WORK/gpu_check.json)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    export_s = {}
    for name in args.models:
        if not model_files(args.work, name)["fp32"].is_file():
            export_s[name] = make_model_files(args.work, name)
    if args.files_only:
        return
    providers = ["cpu"] if args.cpu_only else ["cpu", "cuda", "tensorrt"]
    figures = {"export": export_s, "scenes": SCENES}
    figures.update({name: check_model(args.work, name, providers, args.iterations) for name in args.models})
    headlines = []
    for name in args.models:
        for key, entry in figures[name].items():
            if "error" in entry:
                headlines.append(headline(f"{name} {key}", f"error: {entry['error']}"))
                continue
            parity = entry["vs_cpu_fp32"]
            headlines.append(headline(
                f"{name} {key}: start s / inference p50, p99 ms / vs CPU FP32: p99 score, box, unmatched",
                f"{entry['start_s']} / {entry['inference']['p50_ms']:.2f}, {entry['inference']['p99_ms']:.2f} / "
                f"{parity['score_p99']:.4f}, {parity['box_p99_of_image']:.3%}, {parity['unmatched']}"))
    print(json.dumps(figures, indent=2))
    write_result("gpu_check", "ONNX Runtime providers (CPU reference, CUDA, TensorRT) on FP32, FP16 and INT8 files",
                 figures, headlines, args.json or args.work / "gpu_check.json")


if __name__ == "__main__":
    main()
