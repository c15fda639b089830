"""Helpers for tests that exchange messages over DDS (import from test modules)."""

import time

from rclpy.executors import SingleThreadedExecutor


def spin_until(context, nodes, predicate, timeout_s):
    """Spin ``nodes`` until ``predicate()`` is true or ``timeout_s`` passes; return predicate()."""
    executor = SingleThreadedExecutor(context=context)
    for node in nodes:
        executor.add_node(node)
    deadline = time.monotonic() + timeout_s
    try:
        while not predicate() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        return predicate()
    finally:
        for node in nodes:
            executor.remove_node(node)
        executor.shutdown()
