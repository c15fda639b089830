"""Provider preference and TensorRT option handling, as far as a machine without a GPU can check them."""

import ctypes.util
import logging

import pytest

from detr_ros.errors import ConfigError
from detr_ros.runtime.providers import (
    TensorRTOptions,
    decode_tensorrt_version,
    engine_cache_key,
    gpu_identity,
    resolve_providers,
    tensorrt_provider_options,
)

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
SHA = "ab" * 32


def test_resolve_keeps_order_and_reports_what_is_missing():
    assert resolve_providers(("tensorrt", "cuda", "cpu"), GPU_BUILD) == (GPU_BUILD, {})
    kept, skipped = resolve_providers("tensorrt, cuda, cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert kept == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert skipped == {"tensorrt": "not available in this onnxruntime build"}
    assert resolve_providers(["CUDAExecutionProvider", "cpu"], GPU_BUILD)[0] == GPU_BUILD[1:]
    with pytest.raises(ConfigError, match="empty"):
        resolve_providers([], GPU_BUILD)


def test_tensorrt_options_validate_keys_and_values():
    assert TensorRTOptions.from_dict(None) == TensorRTOptions()
    with pytest.raises(ConfigError, match=r"unknown keys \['fp61'\]"):
        TensorRTOptions.from_dict({"fp61": True})
    with pytest.raises(ConfigError, match="int8='yes'"):
        TensorRTOptions.from_dict({"int8": "yes"})
    with pytest.raises(ConfigError, match="workspace_bytes=-1"):
        TensorRTOptions.from_dict({"workspace_bytes": -1})


def build(options, tmp_path, *, qdq=False, trt="10.3.0", gpu="Orin sm87", sha=SHA, fp16_file=False):
    return tensorrt_provider_options(TensorRTOptions.from_dict(options), device_id=1, model_sha256=sha,
                                     carries_int8_calibration=qdq, trt_version=trt, gpu=gpu, cache_root=tmp_path,
                                     fp16_file=fp16_file)


def test_provider_options_dict(tmp_path):
    options, notes = build({"workspace_bytes": 1 << 30}, tmp_path)
    folder = tmp_path / "tensorrt" / engine_cache_key(SHA, "10.3.0", "Orin sm87", "fp16")
    assert options == {
        "device_id": "1",
        "trt_fp16_enable": "1",
        "trt_int8_enable": "0",
        "trt_max_workspace_size": str(1 << 30),
        "trt_builder_optimization_level": "3",
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str(folder),
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": str(folder),
    }
    assert folder.is_dir() and str(folder) in notes[0]
    assert all(isinstance(value, str) for value in options.values())


def test_int8_follows_the_calibration_the_file_carries(tmp_path):
    assert build({}, tmp_path, qdq=True)[0]["trt_int8_enable"] == "1"
    assert build({"int8": False}, tmp_path, qdq=True)[0]["trt_int8_enable"] == "0"
    with pytest.raises(ConfigError, match="carries no INT8 calibration"):
        build({"int8": True}, tmp_path)
    table = build({"int8": True, "int8_calibration_table": "calib.flatbuffers"}, tmp_path)[0]
    assert table["trt_int8_enable"] == "1" and table["trt_int8_calibration_table_name"] == "calib.flatbuffers"


def test_cache_key_changes_with_model_precision_tensorrt_version_and_gpu():
    keys = {
        engine_cache_key(SHA, "10.3.0", "Orin sm87", "fp16"),
        engine_cache_key("cd" * 32, "10.3.0", "Orin sm87", "fp16"),
        engine_cache_key(SHA, "10.3.0", "Orin sm87", "fp32"),
        engine_cache_key(SHA, "10.7.0", "Orin sm87", "fp16"),
        engine_cache_key(SHA, "10.3.0", "Xavier sm72", "fp16"),
        engine_cache_key(SHA, "10.3.0", "Orin-sm87", "fp16"),  # same slug, different name: the hash tells them apart
    }
    assert len(keys) == 6
    assert engine_cache_key(SHA, "10.3.0", "Orin sm87", "fp16") == engine_cache_key(SHA, "10.3.0", "Orin sm87", "fp16")


def test_fp16_file_is_built_as_it_is_on_tensorrt_10_and_11(tmp_path):
    for trt in ("10.3.0", "11.4.0"):
        options, notes = build({}, tmp_path, trt=trt, fp16_file=True)
        assert options["trt_fp16_enable"] == "0" and "FP16 file" in notes[0]
        assert options["trt_engine_cache_path"].endswith(engine_cache_key(SHA, trt, "Orin sm87", "fp16file"))


def test_fp16_flag_keeps_working_on_tensorrt_10_and_says_it_cannot_on_11(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="detr_ros.runtime"):
        assert build({}, tmp_path, trt="10.3.0")[0]["trt_fp16_enable"] == "1"
        assert not caplog.records
        assert build({"fp16": False}, tmp_path, trt="11.4.0")[0]["trt_fp16_enable"] == "0"
        assert not caplog.records
        options, _ = build({}, tmp_path, trt="11.4.0")
    assert options["trt_fp16_enable"] == "0"
    assert options["trt_engine_cache_path"].endswith(engine_cache_key(SHA, "11.4.0", "Orin sm87", "fp32"))
    assert "cannot apply on TensorRT 11.4.0" in caplog.text and "--fp16" in caplog.text
    # an unidentified TensorRT keeps the flag as asked
    assert build({}, tmp_path, trt=None)[0]["trt_fp16_enable"] == "1"


def test_unidentified_tensorrt_or_gpu_turns_the_caches_off(tmp_path):
    for trt, gpu in ((None, "Orin sm87"), ("10.3.0", None)):
        options, notes = build({}, tmp_path, trt=trt, gpu=gpu)
        assert "trt_engine_cache_enable" not in options and "trt_timing_cache_enable" not in options
        assert "caches off" in notes[0]
    options, notes = build({"engine_cache": False, "timing_cache": False}, tmp_path)
    assert "trt_engine_cache_path" not in options and notes == []


def test_tensorrt_version_codes():
    assert decode_tensorrt_version(100300) == "10.3.0"
    assert decode_tensorrt_version(8601) == "8.6.1"


def test_gpu_identity_is_none_without_a_cuda_driver():
    if ctypes.util.find_library("cuda"):
        assert gpu_identity() is None or " sm" in gpu_identity()
    else:
        assert gpu_identity() is None
