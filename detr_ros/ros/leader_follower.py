"""An executor whose threads take turns: one waits for work, the others run the callbacks they took.

rclpy's MultiThreadedExecutor waits in one thread and hands each ready callback to a pool thread,
so a callback starts only once that thread has woken: tens of microseconds on an idle core, more in
a virtual machine. Here a thread that finds a callback ready hands the waiting to the next thread
and runs the callback itself, at once. A long callback (a camera frame's inference) then neither
waits for a hand-over nor holds up the other callbacks, which the next thread serves meanwhile
within the usual callback-group rules: callbacks of one mutually exclusive group still run one at
a time, those of a reentrant group side by side.
"""

import threading

from rclpy.executors import ConditionReachedException, Executor, ShutdownException, TimeoutException

_NOTHING_TO_RUN = (ConditionReachedException, ShutdownException, TimeoutException)


class LeaderFollowerExecutor(Executor):
    """An rclpy executor whose ``spin_once`` may be called from several threads at a time."""

    def __init__(self, *, context=None):
        super().__init__(context=context)
        self._waiting = threading.Lock()  # held by the one thread that waits for work

    def spin_once(self, timeout_sec=None):
        """Wait for a ready callback (unless another thread is waiting: then wait for that one's turn
        to end) and run it in this thread; returns after ``timeout_sec`` without one."""
        with self._waiting:
            try:
                handler, _, _ = self.wait_for_ready_callbacks(timeout_sec)
            except _NOTHING_TO_RUN:
                return
        handler()
        handler.result()  # raises the callback's exception, if any
