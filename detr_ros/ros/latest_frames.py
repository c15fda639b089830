"""One waiting frame per camera between the subscription callbacks and the inference worker.

Callbacks ``put`` a decoded frame and return at once; a frame still waiting when a newer one
from the same camera arrives is replaced and counted as dropped, so the worker always sees
the newest picture and latency cannot grow with load. The worker ``take``s whatever is
waiting, one frame per camera, and runs them as one batch.
"""

import threading
from dataclasses import dataclass

import numpy as np


@dataclass
class Frame:
    """A decoded camera frame waiting for the model.

    image: uint8 [H, W, 3]; color_order: "rgb" | "bgr"; header: the source message's
    std_msgs/Header; received_ns: monotonic clock (time.monotonic_ns) at the callback.
    """

    camera: int
    image: np.ndarray
    color_order: str
    header: object
    received_ns: int


class LatestFrames:
    """Thread-safe slots, one per camera, each holding only the newest frame."""

    def __init__(self, num_cameras):
        self._slots = [None] * num_cameras
        self._closed = False
        self._ready = threading.Condition()

    def put(self, frame):
        """Offer a frame; returns True when it replaced one that had not been processed (a drop)."""
        with self._ready:
            replaced = self._slots[frame.camera] is not None
            self._slots[frame.camera] = frame
            self._ready.notify()
            return replaced

    def take(self, timeout=None):
        """Wait for a frame (or ``close``, or the timeout) and hand over every waiting frame.

        Returns a list of Frame in camera order, empty on timeout or once closed.
        """
        with self._ready:
            self._ready.wait_for(lambda: self._closed or any(s is not None for s in self._slots), timeout)
            if self._closed:
                return []
            frames = [s for s in self._slots if s is not None]
            self._slots = [None] * len(self._slots)
            return frames

    def close(self):
        """Wake the worker for shutdown; later ``take`` calls return at once with nothing."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
