"""Execution providers: an ordered preference, TensorRT options and the engine-cache key.

A robot asks for ("tensorrt", "cuda", "cpu"); this onnxruntime build may offer only some of
them, so the first available one wins and the rest are skipped with a reason. TensorRT builds
an engine per model, precision, TensorRT version and GPU, so its cache folder is keyed on all
four: a new model, another precision, a TensorRT upgrade or another GPU starts a fresh folder
instead of loading a stale engine.

Precision: up to TensorRT 10 the FP16 builder flag lets TensorRT run any layer of an FP32 file in
FP16, the sensitive ones included. TensorRT 11 has no such flag: every network is strongly typed and
runs each tensor in the type the file declares. An FP16 file (``detr-ros export --fp16``) declares
FP16 where it keeps FP32's detections and FP32 elsewhere, so it is built as it is on both.
"""

import ctypes
import ctypes.util
import hashlib
import logging
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path

from detr_ros.errors import ConfigError
from detr_ros.runtime.detections import check_positive_integer

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
SHORT_NAMES = {full: short for short, full in PROVIDER_NAMES.items()}
# The first TensorRT without the FP16 builder flag (strongly typed networks only).
STRONGLY_TYPED_TENSORRT = 11
LOG = logging.getLogger("detr_ros.runtime")


def default_cache_dir():
    """$DETR_ROS_CACHE, else $XDG_CACHE_HOME/detr_ros, else ~/.cache/detr_ros."""
    if os.environ.get("DETR_ROS_CACHE"):
        return Path(os.environ["DETR_ROS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "detr_ros"


def resolve_providers(preference, available):
    """Keep the preferred providers this build offers, in the order asked.

    preference: names such as "tensorrt", "cuda", "cpu" (or full onnxruntime provider names).
    available: onnxruntime.get_available_providers().
    Returns (kept full names, {short name: why it was skipped}).
    """
    if isinstance(preference, str):
        preference = [p.strip() for p in preference.split(",") if p.strip()]
    if not preference:
        raise ConfigError(f"providers: empty, expected an ordered list from {list(PROVIDER_NAMES)}")
    kept, skipped = [], {}
    for name in preference:
        full = PROVIDER_NAMES.get(name.lower(), name)
        if full not in SHORT_NAMES:
            raise ConfigError(f"providers: unknown provider {name!r}, expected names from {list(PROVIDER_NAMES)}")
        if full in available:
            if full not in kept:
                kept.append(full)
        else:
            skipped[SHORT_NAMES[full]] = "not available in this onnxruntime build"
    if not kept:
        raise ConfigError(
            f"providers: none of {list(preference)} is available in this onnxruntime build "
            f"(available: {', '.join(SHORT_NAMES.get(a, a) for a in available)})"
        )
    return kept, skipped


@dataclass
class TensorRTOptions:
    """User-facing TensorRT settings; ``provider_options`` turns them into onnxruntime's keys.

    int8: "auto" runs INT8 when the file carries its calibration (QDQ nodes), True forces it
    (needs a calibration table for a graph without QDQ nodes), False never.
    """

    fp16: bool = True
    int8: object = "auto"
    int8_calibration_table: str = ""
    engine_cache: bool = True
    cache_dir: str = ""
    workspace_bytes: int = 2 << 30
    timing_cache: bool = True
    builder_optimization_level: int = 3

    @classmethod
    def from_dict(cls, options):
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"tensorrt_options: unknown keys {unknown}, expected keys from {sorted(known)}")
        result = cls(**options)
        if result.int8 not in ("auto", True, False):
            raise ConfigError(f"tensorrt_options.int8={result.int8!r}, expected 'auto', true or false")
        check_positive_integer("tensorrt_options.workspace_bytes", result.workspace_bytes)
        if result.builder_optimization_level not in range(6):
            raise ConfigError(
                f"tensorrt_options.builder_optimization_level={result.builder_optimization_level!r}, expected 0..5"
            )
        return result


def tensorrt_version():
    """The TensorRT library version as "major.minor.patch", or None when TensorRT is not found."""
    try:
        import tensorrt  # optional: the Python bindings ship with JetPack and the pip wheels

        return tensorrt.__version__
    except ImportError:
        pass
    libraries = ("libnvinfer.so.11", "libnvinfer.so.10", "libnvinfer.so.8")
    for path in filter(None, (ctypes.util.find_library("nvinfer"), *libraries)):
        try:
            return decode_tensorrt_version(ctypes.CDLL(path).getInferLibVersion())
        except OSError:
            continue
    return None


def decode_tensorrt_version(code):
    """getInferLibVersion(): major*10000 + minor*100 + patch since TensorRT 10, major*1000 + ... before."""
    major_unit = 10000 if code >= 100000 else 1000
    major, rest = divmod(code, major_unit)
    return f"{major}.{rest // 100}.{rest % 100}"


def gpu_identity(device_id=0):
    """Name and compute capability of a CUDA device through the driver API, or None without one."""
    path = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        cuda = ctypes.CDLL(path)
    except OSError:
        return None
    device = ctypes.c_int()
    name = ctypes.create_string_buffer(256)
    major, minor = ctypes.c_int(), ctypes.c_int()
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(device), device_id) != 0:
        return None
    if cuda.cuDeviceGetName(name, 256, device) != 0:
        return None
    # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, _MINOR = 76
    cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, device)
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)
    return f"{name.value.decode(errors='replace')} sm{major.value}{minor.value}"


def engine_cache_key(model_sha256, trt_version, gpu, precision):
    """Folder name for one model built in one precision on one TensorRT version and one GPU."""
    gpu_slug = re.sub(r"[^A-Za-z0-9]+", "-", gpu).strip("-").lower()
    gpu_hash = hashlib.sha256(gpu.encode()).hexdigest()[:8]
    return f"{model_sha256[:16]}-{precision}-trt{trt_version}-{gpu_slug}-{gpu_hash}"


def fp16_flag(options, fp16_file, trt_version):
    """Whether to set TensorRT's FP16 builder flag: never for an FP16 file (its types decide), as
    ``options.fp16`` asks for an FP32 file up to TensorRT 10, never from TensorRT 11 on (no flag)."""
    if fp16_file or not options.fp16:
        return False
    if trt_version is not None and int(trt_version.split(".")[0]) >= STRONGLY_TYPED_TENSORRT:
        LOG.warning("tensorrt.fp16 cannot apply on TensorRT %s: it builds every file in the precisions the "
                    "file declares, an FP32 file in FP32. For FP16, export with `detr-ros export --fp16` and run "
                    "the .fp16.onnx file it writes", trt_version)
        return False
    return True


def tensorrt_provider_options(options, *, device_id, model_sha256, carries_int8_calibration, trt_version, gpu, cache_root,
                              fp16_file=False):
    """onnxruntime's TensorRT provider options for one model.

    fp16_file: the file is an FP16 export (metadata detr_ros.precision "fp16"), built as it is.
    The engine and timing caches are turned off (with the reason returned) when the TensorRT
    version or the GPU cannot be identified, since an unkeyed cache could hand back a stale engine.
    Returns (provider options dict of strings, list of notes for the log).
    """
    notes = []
    int8 = carries_int8_calibration if options.int8 == "auto" else bool(options.int8)
    if int8 and not carries_int8_calibration and not options.int8_calibration_table:
        raise ConfigError(
            "tensorrt_options.int8=true but the model carries no INT8 calibration (no QDQ nodes) and no "
            "int8_calibration_table was given"
        )
    fp16 = fp16_flag(options, fp16_file, trt_version)
    if fp16_file:
        notes.append("FP16 file: TensorRT builds it in the precisions it declares (no FP16 flag needed)")
    precision = "+".join(name for name, used in (("fp16file", fp16_file), ("int8", int8), ("fp16", fp16)) if used)
    result = {
        "device_id": str(device_id),
        "trt_fp16_enable": "1" if fp16 else "0",
        "trt_int8_enable": "1" if int8 else "0",
        "trt_max_workspace_size": str(options.workspace_bytes),
        "trt_builder_optimization_level": str(options.builder_optimization_level),
    }
    if int8 and options.int8_calibration_table:
        result["trt_int8_calibration_table_name"] = options.int8_calibration_table
    if options.engine_cache or options.timing_cache:
        if trt_version is None or gpu is None:
            notes.append("TensorRT engine and timing caches off: cannot identify the TensorRT version or the GPU")
        else:
            key = engine_cache_key(model_sha256, trt_version, gpu, precision or "fp32")
            folder = Path(options.cache_dir or cache_root) / "tensorrt" / key
            folder.mkdir(parents=True, exist_ok=True)
            if options.engine_cache:
                result["trt_engine_cache_enable"] = "1"
                result["trt_engine_cache_path"] = str(folder)
            if options.timing_cache:
                result["trt_timing_cache_enable"] = "1"
                result["trt_timing_cache_path"] = str(folder)
            notes.append(f"TensorRT cache folder {folder}")
    return result, notes
