"""What this CPU offers that decides how INT8 files are made, and which of them it runs right.

ONNX Runtime multiplies uint8 activations by int8 weights. x86 CPUs with VNNI (AVX512-VNNI or AVX-VNNI)
and Arm CPUs with the dot-product extension add those products straight into int32. Other x86-64 CPUs
(AVX2 without VNNI) first add them in pairs into int16, with saturation: weights that use the full int8
range overflow there, weights limited to 7 bits cannot. So an INT8 file with 8-bit weights is more
exact on a CPU with int8 dot products and wrong in places on one without; 7-bit weights run right on all.
"""

import platform
from functools import lru_cache

CPUINFO = "/proc/cpuinfo"
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "asimddp")
REPORTED_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
                  "asimd", "asimddp")
PORTABLE_INT8_WEIGHT_BITS = 7


@lru_cache(maxsize=None)
def _cpuinfo(path):
    """(model name, frozenset of feature flags) read from /proc/cpuinfo; empty where it cannot be read."""
    model, flags = "", set()
    try:
        with open(path, encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("flags", "features"):  # x86 says flags, Arm says Features
                    flags.update(value.split())
                elif key == "model name" and not model:
                    model = value.strip()
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), frozenset(flags)


def cpu_flags(path=CPUINFO):
    """This CPU's feature flags (lower case, as the kernel names them)."""
    return _cpuinfo(path)[1]


def has_int8_dot_product(flags=None):
    """Whether int8 products are summed in int32 (VNNI or Arm dot product); unknown CPUs count as without."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in INT8_DOT_PRODUCT_FLAGS)


def int8_weight_bits(flags=None):
    """The widest int8 weights this CPU sums without overflow: 8, or the portable 7."""
    return 8 if has_int8_dot_product(flags) else PORTABLE_INT8_WEIGHT_BITS


def describe_cpu(path=CPUINFO):
    """One line: the CPU's model and the features that matter to inference speed and INT8."""
    model, flags = _cpuinfo(path)
    features = [flag for flag in REPORTED_FLAGS if flag in flags]
    return f"{model} ({' '.join(features) or 'no SIMD features reported'})"


def int8_weights_problem(weight_bits, flags=None):
    """Why an INT8 file with weights of ``weight_bits`` bits runs wrong on this CPU, or None when it runs right."""
    if weight_bits > PORTABLE_INT8_WEIGHT_BITS and not has_int8_dot_product(flags):
        return (f"its {weight_bits}-bit weights need a CPU that sums int8 products in int32 (VNNI), and this one "
                "sums them in int16, where they can overflow; export it again with --int8-cpu any")
    return None
