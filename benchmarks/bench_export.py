"""End-to-end export benchmark: our ONNX graph against a plain export of Hugging Face's, INT8 against FP32.

Steps, through the project's own commands where it has one:
  1. transformers RTDetrForObjectDetection, R18-vd settings, random weights, saved as on the Hub;
  2. ``detr-ros convert`` imports it; ``detr-ros export`` writes our FP32 graph and, calibrated on
     synthetic scenes, its INT8 copy;
  3. the transformers model goes through a plain ``torch.onnx.export`` at opset 17;
  4. ``detr-ros bench`` times ours against transformers' and INT8 against FP32, alternating runs, and
     profiles INT8 and FP32 by operator type: how much INT8 speeds up the convolutions, and the
     INT8 speed-up the graph could reach here if nothing but its convolutions changed;
  5. for reference, the same INT8 recipe on transformers' plain export, whose unfused RepVGG branches
     leave more of its time in convolutions for int8 to speed up;
  6. with a trained checkpoint (default: models/synthetic_rtdetr.pt) its FP32 and portable INT8
     exports (``--int8-cpu any``, as shipped) are evaluated with ``detr-ros eval`` on held-out
     synthetic scenes: the INT8 AP delta; and timed and profiled against each other, with the
     speed-up their profile allows.

Targets (RT-DETR-R18-vd, 640x640, batch 1, CPU, 2 threads): ours <= 0.85x transformers' latency,
pre + post-processing < 3% of inference, INT8 >= 1.8x faster than FP32 with AP within 1 point;
the trained checkpoint (320x320 for the shipped one): INT8 >= 1.5x faster with AP within 1 point.

    .venv/bin/python benchmarks/bench_export.py --work /tmp/bench_export [--iterations 20]
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import transformers

from detr_ros.export.quantize import calibration_images, quantize_int8
from detr_ros.runtime.metadata import ModelMetadata
from results import headline, write_result

REPO = Path(__file__).resolve().parents[1]
R18_BACKBONE = dict(hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2], layer_type="basic", embedding_size=64,
                    out_indices=[2, 3, 4])
R18_SETTINGS = dict(encoder_in_channels=[128, 256, 512], hidden_expansion=0.5, decoder_layers=3, num_labels=80)
CONVOLUTIONS = ("Conv", "FusedConv", "NhwcFusedConv", "QLinearConv", "ConvInteger")
INT8_SPEEDUP_TARGET = 1.8
TRAINED_INT8_SPEEDUP_TARGET = 1.5


def detr_ros(*arguments):
    """Run one ``detr-ros`` verb as a user would; stop the benchmark if it fails."""
    command = [sys.executable, "-m", "detr_ros.cli", *map(str, arguments)]
    print("$ detr-ros " + " ".join(map(str, arguments)), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


class LogitsAndBoxes(torch.nn.Module):
    """transformers' model with its two prediction tensors as plain outputs, for torch.onnx.export."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        outputs = self.model(pixel_values=pixel_values)
        return outputs.logits, outputs.pred_boxes


def spread_weights(model, seed):
    """Weights of trained-like magnitude. transformers' initialisation shrinks the encoder's outputs to
    ~1e-9, which makes the top-K query selection a coin toss among ties and pushes the CPU into
    denormal arithmetic; neither says anything about a real model."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point() or "n_points_scale" in name:
                continue
            if tensor.dim() > 1:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * fan_in ** -0.5)
            elif name.endswith(("running_var", "weight")):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            else:
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=generator))


def build_hf_r18(folder, seed):
    config = transformers.RTDetrConfig(backbone_config=transformers.RTDetrResNetConfig(**R18_BACKBONE), **R18_SETTINGS)
    model = transformers.RTDetrForObjectDetection(config).eval()
    spread_weights(model, seed)
    model.save_pretrained(folder)
    return model


def export_hf(model, path, size):
    with torch.no_grad():
        torch.onnx.export(LogitsAndBoxes(model).eval(), (torch.rand(1, 3, *size),), str(path),
                          input_names=["pixel_values"], output_names=["logits", "pred_boxes"],
                          dynamic_axes={"pixel_values": {0: "batch"}}, opset_version=17, dynamo=False)


def quantize_hf(work, size):
    """INT8 of transformers' plain export with the recipe of ``detr-ros export --int8``. The float scopes
    name our graph's nodes, so its decoder is quantized too: int8 decoders ran 0.99x here."""
    with tempfile.TemporaryDirectory() as scratch:
        quantize_int8(work / "hf_r18vd.onnx", work / "hf_r18vd.int8.onnx", calibration_images(work / "calibration", 32),
                      ModelMetadata(input_size=size), work_dir=scratch)


def bench(work, name, model, other, args, *extra):
    report = work / f"{name}.json"
    detr_ros("bench", model, "--compare", other, "--threads", args.threads, "--batch", 1,
             "--iterations", args.iterations, "--warmup", args.warmup, "--json", report, *extra)
    return json.loads(report.read_text())


def int8_bound(int8_vs_fp32, target=INT8_SPEEDUP_TARGET):
    """From the profiles of one alternating run: on a CPU, int8 speeds up the convolutions and little
    else (sampling, normalisation, the float decoder; quantize/dequantize steps add some). The bound
    is the FP32 graph with its convolutions at INT8's speed and everything else as it is.

    With convolutions r times faster, a graph whose other work takes a share x of its FP32 time
    speeds up 1 / (x + (1 - x) / r): reaching the target needs x at most
    (1 / target - 1 / r) / (1 - 1 / r), which is what the run's convolution speed-up allows."""
    int8, fp32 = int8_vs_fp32["model"], int8_vs_fp32["compare"]
    conv_int8, conv_fp32 = (sum(figures["ms"] for op, figures in entry["operators"].items() if op in CONVOLUTIONS)
                            for entry in (int8, fp32))
    other_fp32 = fp32["kernel_ms"] - conv_fp32
    conv_speedup = conv_fp32 / conv_int8
    allowed_other_share = (0.0 if conv_speedup <= target else (1 / target - 1 / conv_speedup) / (1 - 1 / conv_speedup))
    return {"fp32_kernel_ms": fp32["kernel_ms"], "int8_kernel_ms": int8["kernel_ms"],
            "fp32_convolution_share": round(conv_fp32 / fp32["kernel_ms"], 3),
            "int8_convolution_speedup": round(conv_speedup, 3),
            "fp32_other_ms": round(other_fp32, 1), "int8_other_ms": round(int8["kernel_ms"] - conv_int8, 1),
            "int8_speedup_bound": round(fp32["kernel_ms"] / (conv_int8 + other_fp32), 3),
            "fp32_other_share": round(other_fp32 / fp32["kernel_ms"], 3),
            "fp32_other_share_allowed_for_target": round(allowed_other_share, 3)}


def evaluate_int8_ap(work, checkpoint, args):
    """AP of the FP32 and portable INT8 exports of a trained checkpoint on held-out synthetic scenes,
    the INT8 speed-up and what its profile allows."""
    detr_ros("synth", work / "heldout", "--images", args.heldout_images, "--seed", 4242, "--size", args.scene_size)
    detr_ros("synth", work / "trained_calibration", "--images", 32, "--seed", 777, "--size", args.scene_size)
    detr_ros("export", checkpoint, work / "trained.onnx", "--int8", "--int8-cpu", "any", "--calibration",
             work / "trained_calibration")
    metrics = {}
    for variant in ("trained.onnx", "trained.int8.onnx"):
        output = work / f"eval_{variant}.json"
        detr_ros("eval", work / variant, work / "heldout", "--threads", args.threads, "--json", output)
        metrics[variant] = json.loads(output.read_text())["AP"]
    ratio = bench(work, "bench_trained_int8_vs_fp32", work / "trained.int8.onnx", work / "trained.onnx", args,
                  "--profile", args.profile)
    return {"fp32_AP": metrics["trained.onnx"], "int8_AP": metrics["trained.int8.onnx"],
            "AP_delta_points": 100 * (metrics["trained.int8.onnx"] - metrics["trained.onnx"]),
            "int8_speedup": 1 / ratio["ratio"], "int8_profile": int8_bound(ratio, TRAINED_INT8_SPEEDUP_TARGET)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/detr_ros_bench_export"), help="scratch folder")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--profile", type=int, default=10, help="profiled runs a model, INT8 against FP32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, default=REPO / "models" / "synthetic_rtdetr.pt",
                        help="trained checkpoint for the INT8 AP delta (skipped when missing)")
    parser.add_argument("--heldout-images", type=int, default=200)
    parser.add_argument("--scene-size", default="320x320", help="synthetic scenes WIDTHxHEIGHT")
    parser.add_argument("--json", type=Path, help="result JSON (default: benchmarks/results/bench_export.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)

    hf_model = build_hf_r18(work / "hf_r18vd", seed=0)
    export_hf(hf_model, work / "hf_r18vd.onnx", (640, 640))
    detr_ros("convert", work / "hf_r18vd", work / "r18vd.pt")
    detr_ros("synth", work / "calibration", "--images", 32, "--seed", 99, "--size", "640x480")
    detr_ros("export", work / "r18vd.pt", work / "r18vd.onnx", "--size", "640x640", "--int8",
             "--calibration", work / "calibration")

    ours_vs_hf = bench(work, "bench_ours_vs_hf", work / "r18vd.onnx", work / "hf_r18vd.onnx", args)
    int8_vs_fp32 = bench(work, "bench_int8_vs_fp32", work / "r18vd.int8.onnx", work / "r18vd.onnx", args,
                         "--profile", args.profile)
    quantize_hf(work, (640, 640))
    hf_int8_vs_fp32 = bench(work, "bench_hf_int8_vs_fp32", work / "hf_r18vd.int8.onnx", work / "hf_r18vd.onnx", args)
    summary = {
        "ours_over_hf_inference": ours_vs_hf["ratio"],
        "ours_over_hf_inference_paired": ours_vs_hf["paired_ratio"],
        "ours_over_hf_inference_fastest_runs": ours_vs_hf["ratio_of_minimums"],
        "pre_post_share_of_inference": ours_vs_hf["model"]["pre_post_share_of_inference"],
        "int8_speedup_over_fp32": round(1 / int8_vs_fp32["ratio"], 3),
        "int8_speedup_over_fp32_paired": round(1 / int8_vs_fp32["paired_ratio"], 3),
        "int8_speedup_over_fp32_fastest_runs": round(1 / int8_vs_fp32["ratio_of_minimums"], 3),
        "int8_profile": int8_bound(int8_vs_fp32),
        "reference_hf_int8_speedup_over_hf_fp32": round(1 / hf_int8_vs_fp32["ratio"], 3),
        "reference_hf_int8_speedup_over_hf_fp32_fastest_runs": round(1 / hf_int8_vs_fp32["ratio_of_minimums"], 3),
        "targets": {"ours_over_hf_inference": "<= 0.85", "pre_post_share_of_inference": "< 0.03",
                    "int8_speedup_over_fp32": f">= {INT8_SPEEDUP_TARGET}", "int8_AP_delta_points": "within 1"},
    }
    if args.checkpoint.is_file():
        summary["trained_int8"] = evaluate_int8_ap(work, args.checkpoint, args)
    else:
        print(f"no trained checkpoint at {args.checkpoint}: INT8 AP delta not measured")
    print(json.dumps(summary, indent=2))
    headlines = [
        headline("our FP32 export / transformers' plain export, inference latency (ratio of medians)",
                 f"{summary['ours_over_hf_inference']:.3f}", "<= 0.85"),
        headline("pre- and post-processing / inference", f"{100 * summary['pre_post_share_of_inference']:.2f}%", "< 3%"),
        headline("INT8 speed-up over our FP32 (ratio of medians)", f"{summary['int8_speedup_over_fp32']:.2f}x",
                 f">= {INT8_SPEEDUP_TARGET}x"),
        headline("INT8 speed-up the profile allows (convolutions at INT8 speed, the rest as FP32)",
                 f"{summary['int8_profile']['int8_speedup_bound']:.2f}x"),
    ]
    if "trained_int8" in summary:
        trained = summary["trained_int8"]
        headlines.append(headline(f"{args.checkpoint.name}: INT8 AP - FP32 AP, {args.heldout_images} held-out scenes",
                                  f"{trained['AP_delta_points']:+.2f} points ({trained['fp32_AP']:.3f} -> "
                                  f"{trained['int8_AP']:.3f}), {trained['int8_speedup']:.2f}x faster (its profile "
                                  f"allows {trained['int8_profile']['int8_speedup_bound']:.2f}x)",
                                  f"within 1 point, >= {TRAINED_INT8_SPEEDUP_TARGET}x"))
    write_result("bench_export", "ONNX Runtime CPU: RT-DETR-R18-vd 640x640, batch 1, "
                 f"{args.threads} threads", summary, headlines, args.json)


if __name__ == "__main__":
    main()
