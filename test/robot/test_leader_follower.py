"""LeaderFollowerExecutor with real rclpy timers: callbacks of a reentrant group run side by side, in the
threads that took them; those of a mutually exclusive group one at a time; a failing callback ends the
node's process (run_node) instead of leaving a thread behind."""

import subprocess
import sys
import threading
import time

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node

from detr_ros.ros.leader_follower import LeaderFollowerExecutor


def spin_in_threads(context, node, until, timeout_s, threads=2):
    """Spin ``node`` from ``threads`` threads until ``until`` is set (or ``timeout_s``)."""
    executor = LeaderFollowerExecutor(context=context)
    executor.add_node(node)
    deadline = time.monotonic() + timeout_s

    def spin():
        while not until.is_set() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)

    spinners = [threading.Thread(target=spin) for _ in range(threads)]
    for thread in spinners:
        thread.start()
    for thread in spinners:
        thread.join()
    executor.shutdown()


def test_a_long_callback_does_not_hold_up_the_others(ros_context):
    node = Node("leader_follower_reentrant", context=ros_context)
    group = ReentrantCallbackGroup()
    released, done = threading.Event(), threading.Event()
    seen = {}

    def long_callback():  # waits for the short one, which only another thread can run meanwhile
        if "long" not in seen:
            seen["long"] = threading.get_ident()
            seen["released"] = released.wait(5.0)
            done.set()

    def short_callback():
        if "long" in seen and not released.is_set():
            seen["short"] = threading.get_ident()
            released.set()

    try:
        node.create_timer(0.01, long_callback, callback_group=group)
        node.create_timer(0.02, short_callback, callback_group=group)
        spin_in_threads(ros_context, node, done, 10.0)
    finally:
        node.destroy_node()
    assert seen.get("released") is True, seen
    assert seen["long"] != seen["short"]


def test_callbacks_of_a_mutually_exclusive_group_never_overlap(ros_context):
    node = Node("leader_follower_exclusive", context=ros_context)
    group = MutuallyExclusiveCallbackGroup()
    lock = threading.Lock()
    calls, overlaps, threads_used = [0], [0], set()
    enough = threading.Event()

    def callback():
        if not lock.acquire(blocking=False):
            overlaps[0] += 1
            return
        try:
            threads_used.add(threading.get_ident())
            time.sleep(0.005)
            calls[0] += 1
            if calls[0] >= 40:
                enough.set()
        finally:
            lock.release()

    try:
        for _ in range(2):
            node.create_timer(0.002, callback, callback_group=group)
        spin_in_threads(ros_context, node, enough, 20.0)
    finally:
        node.destroy_node()
    assert calls[0] >= 40 and overlaps[0] == 0, (calls, overlaps)
    assert len(threads_used) == 2, "both threads took turns"


FAILING_NODE = """
import sys
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from detr_ros.ros.executable import run_node


class FailingNode(Node):
    def __init__(self):
        super().__init__("leader_follower_failing")
        self.timer = self.create_timer(0.1, self.fail, callback_group=ReentrantCallbackGroup())

    def fail(self):
        self.timer.cancel()  # once: nothing else would wake the other thread
        raise RuntimeError("the callback failed on purpose")


sys.exit(run_node(FailingNode, "failing", "fails", [], threads=2))
"""


def test_a_failing_callback_ends_every_spinning_thread_and_the_process(ros_env):
    # Were the other thread left waiting for work, the process would never end.
    result = subprocess.run([sys.executable, "-c", FAILING_NODE], env=ros_env, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode != 0
    assert "RuntimeError: the callback failed on purpose" in result.stderr
