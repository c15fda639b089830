"""A node process leaves no Fast DDS shared-memory segment behind, however it ends.

Each segment is 16 MiB of RAM (tmpfs) under the loopback profile and stays until the machine
restarts. A node that refuses to start leaves without its DDS teardown, so it removes its segment
itself; a node killed by a test helper or by the demo has its segment removed by the one that
killed it, once no living process maps it.
"""

import subprocess
import sys
from pathlib import Path

from detr_ros.ros import shared_memory
from node_testing import start_detector

FAILS_AT_START = r"""
import sys
from rclpy.node import Node
from detr_ros.errors import DetrRosError
from detr_ros.ros import shared_memory
from detr_ros.ros.executable import run_node

class FailsAtStart(Node):
    def __init__(self):
        super().__init__("fails_at_start")
        print("SEGMENTS", *shared_memory.owned_segments(), flush=True)
        raise DetrRosError("this node refuses to start")

sys.exit(run_node(FailsAtStart, "fails_at_start", "", []))
"""


def test_a_node_that_fails_at_start_removes_its_segment(ros_env):
    result = subprocess.run([sys.executable, "-c", FAILS_AT_START], env=ros_env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "this node refuses to start" in result.stdout + result.stderr
    segments = next([Path(s) for s in line.split()[1:]] for line in result.stdout.splitlines()
                    if line.startswith("SEGMENTS"))
    assert segments, "the node made no shared-memory segment: the test proves nothing"
    assert not [s for s in segments if s.exists() or shared_memory.lock_file(s).exists()]


def test_the_segment_of_a_killed_node_is_removed_only_once_it_is_dead(ros_env, tmp_path):
    detector = start_detector(ros_env, tmp_path, {})
    try:
        owned = shared_memory.owned_segments(detector.process.pid)
        assert owned and all(s.exists() and shared_memory.lock_file(s).exists() for s in owned), owned
        assert shared_memory.remove_abandoned(owned) == [], "removed the segment of a living node"
        assert all(s.exists() for s in owned)
        assert shared_memory.kill(detector.process) == owned
        assert not any(s.exists() or shared_memory.lock_file(s).exists() for s in owned)
    finally:
        detector.stop()
