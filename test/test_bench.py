"""``detr-ros bench``: per-stage figures for known graphs, inference-only for foreign ones, ratio, JSON."""

import json
import subprocess
import sys

import pytest
import torch

from detr_ros.cli import main
from detr_ros.runtime.cpu import describe_cpu, int8_weight_bits
from test_runtime import ULTRALYTICS_8_3, OfficialBrightBox, UltralyticsBrightBox, export_graph


class PlainExport(torch.nn.Module):
    """A graph of no known signature, like a plain export of another implementation: logits and boxes."""

    def __init__(self):
        super().__init__()
        self.patchify = torch.nn.Conv2d(3, 8, 8, stride=8)

    def forward(self, pixel_values):
        tokens = self.patchify(pixel_values).flatten(2).transpose(1, 2)  # [N, H*W/64, 8]
        return tokens, tokens[..., :4].sigmoid()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    foreign = folder / "plain.onnx"
    torch.onnx.export(PlainExport(), (torch.rand(1, 3, 96, 128),), str(foreign), input_names=["pixel_values"],
                      output_names=["logits", "pred_boxes"],
                      dynamic_axes={"pixel_values": {0: "batch", 2: "height", 3: "width"}}, opset_version=17,
                      dynamo=False)
    return {
        "official": export_graph(OfficialBrightBox(), folder / "official.onnx", (96, 128)),
        "ultralytics": export_graph(UltralyticsBrightBox(), folder / "ultralytics.onnx", (96, 128), official=False,
                                    metadata={**ULTRALYTICS_8_3, "names": "{0: 'a', 1: 'b'}"}),
        "foreign": foreign,
    }


def bench(tmp_path, capsys, *arguments):
    report_path = tmp_path / "bench.json"
    code = main(["bench", *map(str, arguments), "--iterations", "6", "--warmup", "1", "--threads", "1",
                 "--frame-size", "120x160", "--json", str(report_path)])
    assert code == 0
    return json.loads(report_path.read_text()), capsys.readouterr().out


def test_bench_compares_a_known_and_a_foreign_graph(models, tmp_path, capsys):
    report, table = bench(tmp_path, capsys, models["official"], "--compare", models["foreign"], "--batch", "2")
    model, other = report["model"], report["compare"]
    assert not model["foreign"] and other["foreign"]
    assert set(model["stages"]) == {"preprocess", "inference", "postprocess", "total"}
    assert set(other["stages"]) == {"inference"}
    for figures in model["stages"].values():
        assert 0 < figures["min_ms"] <= figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"]
        assert figures["fps"] > 0
    assert report["ratio"] == pytest.approx(
        model["stages"]["inference"]["p50_ms"] / other["stages"]["inference"]["p50_ms"], rel=1e-3)
    assert report["paired_ratio"] > 0
    assert report["ratio_of_minimums"] == pytest.approx(
        model["stages"]["inference"]["min_ms"] / other["stages"]["inference"]["min_ms"], rel=1e-3)
    share = (model["stages"]["preprocess"]["p50_ms"] + model["stages"]["postprocess"]["p50_ms"]) / model[
        "stages"]["inference"]["p50_ms"]
    assert model["pre_post_share_of_inference"] == pytest.approx(share, rel=1e-3)
    assert other["input_size"] == [96, 128]  # the foreign graph is fed MODEL's image size
    assert "session.run only" in other["covers"]["inference"]
    assert "plain.onnx (foreign)" in table and "ratio = MODEL / OTHER" in table and "covers" in table
    # the CPU it ran on, and the INT8 weights an export on it chooses
    assert report["settings"]["cpu"] == describe_cpu() and f"CPU: {describe_cpu()}" in table
    assert report["settings"]["int8_weight_bits_for_this_cpu"] == int8_weight_bits()


def test_bench_known_graphs_on_each_side(models, tmp_path, capsys):
    report, table = bench(tmp_path, capsys, models["ultralytics"], "--compare", models["official"])
    assert not report["compare"]["foreign"]
    assert set(report["compare"]["stages"]) == {"preprocess", "inference", "postprocess", "total"}
    assert report["model"]["provider"] == "CPUExecutionProvider"
    assert "pre + post-processing / inference" in table


def test_bench_profiles_kernel_time_by_operator(models, tmp_path, capsys):
    report, table = bench(tmp_path, capsys, models["official"], "--compare", models["foreign"], "--profile", "3")
    # The foreign graph is one convolution and a few reshapes: its one Conv node is found and timed.
    foreign = report["compare"]
    assert foreign["operators"]["Conv"]["nodes"] == 1
    assert 0 < foreign["operators"]["Conv"]["ms"] <= foreign["kernel_ms"]
    known = report["model"]
    assert known["operators"] and "Conv" not in known["operators"]
    assert all(figures["ms"] >= 0 and figures["nodes"] >= 1 for figures in known["operators"].values())
    assert list(known["operators"]) == sorted(known["operators"], key=lambda op: -known["operators"][op]["ms"])
    assert report["settings"]["profile"] == 3
    assert "kernel time by operator type, median of 3 profiled runs" in table and "all operators" in table
    unprofiled, _ = bench(tmp_path, capsys, models["official"])
    assert "operators" not in unprofiled["model"]


def test_bench_refuses_bad_input(models, tmp_path, capsys):
    missing = tmp_path / "missing.onnx"
    assert main(["bench", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["bench", str(models["official"]), "--frame-size", "big"]) == 2
    assert "expected HEIGHTxWIDTH" in capsys.readouterr().err
    assert main(["bench", str(models["official"]), "--profile", "-1"]) == 2
    assert "--profile not negative" in capsys.readouterr().err


def test_bench_module_does_not_import_torch():
    code = "import sys, detr_ros.tools.bench; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
