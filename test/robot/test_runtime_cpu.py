"""The CPU's capabilities, read from /proc/cpuinfo text of three kinds of machine, decide INT8 weights."""

import pytest

from detr_ros.runtime.cpu import cpu_flags, describe_cpu, has_int8_dot_product, int8_weight_bits, int8_weights_problem

AVX2_ONLY = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
flags\t\t: fpu sse sse2 avx fma avx2 bmi2
"""
AVX512_VNNI = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni
processor\t: 1
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx_vnni
"""
ARM_DOT_PRODUCT = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
"""


@pytest.mark.parametrize("text, dot_product, bits", [(AVX2_ONLY, False, 7), (AVX512_VNNI, True, 8),
                                                     (ARM_DOT_PRODUCT, True, 8)])
def test_int8_weights_follow_the_cpu(tmp_path, text, dot_product, bits):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    flags = cpu_flags(str(cpuinfo))
    assert has_int8_dot_product(flags) is dot_product
    assert int8_weight_bits(flags) == bits
    assert int8_weights_problem(7, flags) is None
    assert (int8_weights_problem(8, flags) is None) is dot_product


def test_full_range_weights_on_a_cpu_without_vnni_are_explained(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(AVX2_ONLY)
    problem = int8_weights_problem(8, cpu_flags(str(cpuinfo)))
    assert "int16" in problem and "--int8-cpu any" in problem


def test_cpu_description_names_model_and_features(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(AVX512_VNNI)
    assert describe_cpu(str(cpuinfo)) == "Intel(R) Xeon(R) Processor (avx2 fma avx512f avx512bw avx512_vnni avx_vnni)"


def test_unreadable_cpuinfo_means_portable_weights(tmp_path):
    flags = cpu_flags(str(tmp_path / "missing"))
    assert flags == frozenset() and int8_weight_bits(flags) == 7
    assert describe_cpu(str(tmp_path / "missing"))  # still names the machine
