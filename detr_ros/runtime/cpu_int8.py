"""The INT8 file on the CPU: MODEL.int8.onnx beside MODEL.onnx runs in its place when it suits this CPU.

``detr-ros export --int8`` writes both files side by side. On the CPU the INT8 one is the faster;
it is taken only when its metadata says which int8 weights it holds (a detr_ros export) and this
CPU sums those without overflow (detr_ros.runtime.cpu). On a GPU the FP32 file is what TensorRT
and CUDA want, so nothing is swapped there.
"""

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from detr_ros.runtime.cpu import int8_weights_problem
from detr_ros.runtime.metadata import KEY_INT8_WEIGHT_BITS
from detr_ros.runtime.model_file import declared_metadata
from detr_ros.runtime.providers import resolve_providers

INT8_SUFFIX = ".int8.onnx"


@dataclass(frozen=True)
class ModelChoice:
    """The file to run, and for the log why it is not the one named (None when it is)."""

    path: Path
    note: str = None


def int8_sibling(model_path):
    """MODEL.int8.onnx for MODEL.onnx; None for a file that is INT8 itself or not named *.onnx."""
    model_path = Path(model_path)
    if model_path.name.endswith(INT8_SUFFIX) or model_path.suffix != ".onnx":
        return None
    return model_path.with_name(model_path.name[: -len(".onnx")] + INT8_SUFFIX)


def _int8_weight_bits(path):
    """The int8 weight width a detr_ros export records, 0 for a file that records none."""
    recorded = declared_metadata(path, KEY_INT8_WEIGHT_BITS)
    return int(recorded) if recorded.isdigit() else 0


def choose_cpu_model(model_path, providers, cpu_int8=True):
    """The ModelChoice for ``model_path`` run with the preferred ``providers``: its INT8 sibling when
    cpu_int8 is true, the CPU is the provider that will run it, and the sibling suits this CPU."""
    model_path = Path(model_path)
    sibling = int8_sibling(model_path)
    kept, _ = resolve_providers(providers, ort.get_available_providers())
    if not cpu_int8 or sibling is None or not sibling.is_file() or kept[0] != "CPUExecutionProvider":
        return ModelChoice(model_path)
    try:
        weight_bits = _int8_weight_bits(sibling)
    except OSError as error:
        return ModelChoice(model_path, f"not using {sibling.name} beside it: it cannot be read "
                                       f"({error.strerror or error})")
    if not weight_bits:
        return ModelChoice(model_path, f"not using {sibling.name} beside it: it does not record its int8 weights "
                                       "(not a detr_ros INT8 export)")
    problem = int8_weights_problem(weight_bits)
    if problem is not None:
        return ModelChoice(model_path, f"not using {sibling.name} beside it: {problem}")
    return ModelChoice(sibling, f"running {sibling.name}, the INT8 file beside {model_path.name}, on the CPU "
                                "(faster; set cpu_int8 to false to run the FP32 file)")
