"""Where benchmark figures live: one JSON file a benchmark in benchmarks/results/, with the run's facts.

Each benchmark script ends with ``write_result``: its full figures, the few headline rows that
docs/benchmarks.md shows (label, value, target), and what the run was: date, commit, CPU, cores,
Python and library versions. ``benchmarks/report.py`` turns the files into docs/benchmarks.md.
"""

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from detr_ros.runtime.cpu import describe_cpu

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LIBRARIES = ("onnxruntime", "numpy", "opencv-python-headless", "torch")


def _commit():
    try:
        found = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                               text=True, timeout=10, check=False)
    except OSError:
        return "unknown"
    return found.stdout.strip() or "unknown"


def _version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def run_facts():
    """What this run was: when, on which commit, on what machine and software."""
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "cpu": describe_cpu(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "ros_distro": os.environ.get("ROS_DISTRO", ""),
        "libraries": {name: version for name in LIBRARIES if (version := _version(name))},
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def headline(label, value, target=""):
    """One row of docs/benchmarks.md: what was measured, the figure (text), and the goal if there is one."""
    return {"label": label, "value": value, "target": target}


def write_result(name, title, figures, headlines, path=None):
    """Write benchmarks/results/NAME.json (or ``path``) and return its path."""
    path = Path(path) if path is not None else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "title": title, "run": run_facts(), "headlines": headlines, "figures": figures}
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path}")
    return path
