"""`detr-ros` is one entry point whose help lists every verb."""

import shutil
import subprocess

from detr_ros.cli import VERBS


def test_help_lists_every_verb():
    executable = shutil.which("detr-ros")
    assert executable, "the detr-ros console script is not on PATH"
    result = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    for verb in ("synth", "train", "eval", "convert", "export", "bench", "detect"):
        assert verb in VERBS
        assert f"    {verb} " in result.stdout


def test_unknown_verb_is_refused_with_usage():
    result = subprocess.run([shutil.which("detr-ros"), "frobnicate"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_verb_help_shows_that_verbs_arguments():
    result = subprocess.run([shutil.which("detr-ros"), "synth", "--help"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: detr-ros synth")
    assert "--images" in result.stdout
