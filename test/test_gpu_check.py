"""benchmarks/gpu_check.py --cpu-only: the part of the GPU check that needs no GPU runs as it will there.

It makes the shipped model's FP32, FP16 and INT8 files, runs each on the CPU, computes the parity
figures and writes the JSON; on a GPU machine the same code adds the CUDA and TensorRT rows.
"""

import json
import subprocess
import sys
from pathlib import Path

import onnx

from detr_ros.export.fp16 import BOX_P99_BOUND, SCORE_P99_BOUND

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_part_makes_files_reference_parity_and_json(tmp_path):
    completed = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--work", str(tmp_path), "--cpu-only",
                                "--models", "shipped", "--iterations", "3"], cwd=REPO, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stderr[-2000:]
    document = json.loads((tmp_path / "gpu_check.json").read_text())
    assert document["benchmark"] == "gpu_check" and document["run"]["commit"]
    rows = document["figures"]["shipped"]
    assert sorted(rows) == ["cpu/fp16", "cpu/fp32", "cpu/int8"]
    # the reference against itself, then the FP16 file within the export's bounds
    assert rows["cpu/fp32"]["vs_cpu_fp32"]["score_max"] == 0.0 and rows["cpu/fp32"]["vs_cpu_fp32"]["pairs"] > 10
    fp16 = rows["cpu/fp16"]["vs_cpu_fp32"]
    assert fp16["unmatched"] == 0 and fp16["score_p99"] <= SCORE_P99_BOUND and fp16["box_p99_of_image"] <= BOX_P99_BOUND
    assert rows["cpu/int8"]["vs_cpu_same_file"]["score_max"] == 0.0 and rows["cpu/int8"]["inference"]["p50_ms"] > 0
    props = {name: {p.key: p.value for p in onnx.load(str(tmp_path / "models" / name)).metadata_props}
             for name in ("shipped.fp16.onnx", "shipped.int8.onnx")}
    assert props["shipped.fp16.onnx"]["detr_ros.precision"] == "fp16"
    assert props["shipped.int8.onnx"]["detr_ros.quantization"] == "int8_qdq_symmetric"
