"""docs/benchmarks.md is generated from the JSON the benchmark scripts write, with the run's facts."""

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import report  # noqa: E402
from results import headline, write_result  # noqa: E402

from detr_ros.runtime.cpu import describe_cpu  # noqa: E402


def test_a_result_becomes_a_section_with_its_machine_commit_and_headlines(tmp_path):
    path = write_result("bench_example", "An example", {"ratio": 0.8}, [headline("ours / theirs", "0.800", "<= 0.85")],
                        tmp_path / "bench_example.json")
    document = json.loads(path.read_text())
    assert document["figures"] == {"ratio": 0.8}
    assert document["run"]["cpu"] == describe_cpu() and document["run"]["commit"] and document["run"]["date"]
    text = report.render(tmp_path)
    assert "## An example" in text and "| ours / theirs | 0.800 | <= 0.85 |" in text
    assert describe_cpu() in text and document["run"]["commit"] in text


def test_the_committed_report_matches_the_committed_results():
    assert (BENCHMARKS.parent / "docs" / "benchmarks.md").read_text() == report.render()
