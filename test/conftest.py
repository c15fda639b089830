"""Fixtures every test may use: a hermetic ROS 2 domain on loopback.

At import, before any test creates a node, the whole test session (and every
process it starts) is put on a Fast DDS profile that binds only 127.0.0.1 and on
a ROS domain id of its own, so nothing leaves the machine and parallel runs of
the suite don't hear each other.

At the end of the session, the Fast DDS shared-memory segments made during it whose process ended
without removing them (a node that crashed or was killed while a peer still mapped its segment)
are removed and named in the summary: 16 MiB of RAM each otherwise, until the machine restarts.
"""

import os
import sys
from pathlib import Path

import pytest

from detr_ros.ros import shared_memory
from detr_ros.ros.loopback_dds import keep_dds_on_loopback

REPO_ROOT = Path(__file__).resolve().parents[1]
# Read before any test runs: only segments made after this are the session's to remove.
SEGMENTS_BEFORE_SESSION = set(shared_memory.segments())
removed_segments = []


def _session_domain_id():
    # 101..200: clear of the default 0 and of the ids people pick by hand.
    return 101 + os.getpid() % 100


keep_dds_on_loopback(os.environ, _session_domain_id(), REPO_ROOT / "config" / "fastdds_loopback.xml")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
if sys.prefix not in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
    os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join(
        p for p in (sys.prefix, os.environ.get("AMENT_PREFIX_PATH")) if p)


@pytest.fixture(scope="session")
def ros_env():
    """Environment for subprocesses (nodes, tools) that must join this session's domain."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def ros_context():
    """An initialised rclpy context on the session's hermetic domain, shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)


def pytest_sessionfinish(session):
    made_in_session = [s for s in shared_memory.segments() if s not in SEGMENTS_BEFORE_SESSION]
    removed_segments.extend(shared_memory.remove_abandoned(made_in_session))


def pytest_terminal_summary(terminalreporter):
    if removed_segments:
        terminalreporter.write_line(
            f"removed {len(removed_segments)} Fast DDS shared-memory segments left by processes that ended "
            f"during this session: {' '.join(s.name for s in removed_segments)}", yellow=True)
