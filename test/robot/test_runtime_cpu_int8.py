"""On the CPU the INT8 file beside the FP32 model runs in its place, when it suits this CPU."""

import os
import shutil

import pytest

from detr_ros.runtime import cpu_int8
from detr_ros.runtime.cpu_int8 import choose_cpu_model, int8_sibling
from node_testing import SHIPPED_MODEL

SHIPPED_INT8 = SHIPPED_MODEL.with_name("synthetic_rtdetr.int8.onnx")


@pytest.fixture
def model_pair(tmp_path):
    """model.onnx with the shipped INT8 file (portable 7-bit weights) beside it as model.int8.onnx."""
    assert SHIPPED_INT8.is_file(), f"{SHIPPED_INT8} is missing: the shipped model comes with its INT8 file"
    os.symlink(SHIPPED_MODEL, tmp_path / "model.onnx")
    os.symlink(SHIPPED_INT8, tmp_path / "model.int8.onnx")
    return tmp_path / "model.onnx", tmp_path / "model.int8.onnx"


def test_the_int8_sibling_is_named_after_the_model(tmp_path):
    assert int8_sibling(tmp_path / "robot.onnx") == tmp_path / "robot.int8.onnx"
    assert int8_sibling(tmp_path / "robot.int8.onnx") is None  # already INT8: runs as named
    assert int8_sibling(tmp_path / "robot.pt") is None


def test_the_int8_file_beside_the_model_runs_on_the_cpu(model_pair):
    fp32, int8 = model_pair
    choice = choose_cpu_model(fp32, ["cuda", "cpu"])  # no CUDA in this build: the CPU runs it
    assert choice.path == int8
    assert "running model.int8.onnx, the INT8 file beside model.onnx" in choice.note
    assert "cpu_int8 to false" in choice.note


def test_cpu_int8_false_runs_the_named_file(model_pair):
    fp32, int8 = model_pair
    assert choose_cpu_model(fp32, ["cpu"], cpu_int8=False) == cpu_int8.ModelChoice(fp32)
    assert choose_cpu_model(int8, ["cpu"], cpu_int8=False) == cpu_int8.ModelChoice(int8)


def test_a_model_without_an_int8_file_runs_as_named(tmp_path):
    shutil.copy(SHIPPED_MODEL, tmp_path / "alone.onnx")
    assert choose_cpu_model(tmp_path / "alone.onnx", ["cpu"]) == cpu_int8.ModelChoice(tmp_path / "alone.onnx")


def test_an_int8_file_that_does_not_say_its_weights_is_not_used(tmp_path):
    os.symlink(SHIPPED_MODEL, tmp_path / "model.onnx")
    os.symlink(SHIPPED_MODEL, tmp_path / "model.int8.onnx")  # an FP32 file under the INT8 name
    choice = choose_cpu_model(tmp_path / "model.onnx", ["cpu"])
    assert choice.path == tmp_path / "model.onnx"
    assert "not using model.int8.onnx" in choice.note and "does not record its int8 weights" in choice.note


def test_an_int8_file_whose_weights_overflow_on_this_cpu_is_not_used(model_pair, monkeypatch):
    fp32, _ = model_pair
    monkeypatch.setattr(cpu_int8, "int8_weights_problem", lambda bits: f"{bits}-bit weights overflow here")
    choice = choose_cpu_model(fp32, ["cpu"])
    assert choice.path == fp32
    assert choice.note == "not using model.int8.onnx beside it: 7-bit weights overflow here"
