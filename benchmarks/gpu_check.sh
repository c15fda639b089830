#!/usr/bin/env bash
# The GPU check in one command, on a machine with an NVIDIA GPU and its driver:
#     bash benchmarks/gpu_check.sh [WORK]        (default WORK: out/gpu_check)
# 1. model files (FP32, FP16, INT8 of the shipped model and of an R50-sized one) in the project's
#    environment (`make env` makes it where it is missing; the export needs PyTorch);
# 2. a virtual environment of its own, WORK/venv-gpu, with onnxruntime-gpu (the version the lock pins
#    for onnxruntime, with the CUDA and cuDNN wheels it names) and the TensorRT libraries of the major
#    version its TensorRT provider links, all from PyPI;
# 3. benchmarks/gpu_check.py there: CPU reference, CUDA and TensorRT providers, parity, latency,
#    engine-build time; the figures go to WORK/gpu_check.json (benchmarks/results.py's format).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mkdir -p "${1:-$root/out/gpu_check}" && cd "${1:-$root/out/gpu_check}" && pwd)"
cd "$root"

[ -x .venv/bin/python ] || make env
scripts/run_in_env.sh python benchmarks/gpu_check.py --work "$work" --files-only

venv="$work/venv-gpu"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
ort_version="$(sed -n 's/^onnxruntime==//p' requirements/lock.txt)"
# The runtime's own requirements, as the lock pins them, with the GPU build of onnxruntime.
grep -E '^(numpy|opencv-python-headless|PyYAML)==' requirements/lock.txt > "$work/gpu-constraints.txt"
"${pip[@]}" -c "$work/gpu-constraints.txt" "onnxruntime-gpu[cuda,cudnn]==$ort_version" numpy opencv-python-headless \
    pyyaml
# Which TensorRT and CUDA the provider libraries were built against: their NEEDED entries say.
read -r trt_major cuda_major < <("$venv/bin/python" - <<'EOF'
import pathlib, re
import onnxruntime
capi = pathlib.Path(onnxruntime.__file__).parent / "capi"
trt = re.search(rb"libnvinfer\.so\.(\d+)", (capi / "libonnxruntime_providers_tensorrt.so").read_bytes())
cuda = re.search(rb"libcudart\.so\.(\d+)", (capi / "libonnxruntime_providers_cuda.so").read_bytes())
print(trt.group(1).decode() if trt else "10", cuda.group(1).decode() if cuda else "12")
EOF
)
"${pip[@]}" "tensorrt-cu${cuda_major}-libs==${trt_major}.*"
site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
export LD_LIBRARY_PATH="$site/tensorrt_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# onnxruntime finds the CUDA and cuDNN wheels' libraries itself (preload_dlls); the runtime runs
# from this checkout, without PyTorch.
PYTHONPATH="$root" "$venv/bin/python" - "$work" <<'EOF'
import runpy, sys
import onnxruntime
onnxruntime.preload_dlls()
work = sys.argv[1]
sys.argv = ["benchmarks/gpu_check.py", "--work", work]
sys.path.insert(0, "benchmarks")
runpy.run_path("benchmarks/gpu_check.py", run_name="__main__")
EOF
