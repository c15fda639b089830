"""One waiting frame per camera between the subscription callbacks and the model.

A callback ``put``s its decoded frame. When no frame is being inferred, that callback runs the
model itself: it ``take``s whatever is waiting, one frame per camera, as one batch, and takes
again after each batch until nothing waits. Frames arriving meanwhile (callbacks in the executor's
other threads) wait in their camera's slot; a frame still waiting when a newer one from the same
camera arrives is replaced and counted as dropped, so the model always sees the newest picture and
latency cannot grow with load.
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
    """Thread-safe slots, one per camera, each holding only the newest frame, and who runs the model."""

    def __init__(self, num_cameras):
        self._slots = [None] * num_cameras
        self._closed = False
        self._running = False  # a caller of put was told to run and has not yet found the slots empty
        self._changed = threading.Condition()

    def put(self, frame):
        """Offer a frame; returns (replaced, run). replaced: it replaced a frame not yet taken (a drop);
        run: no one is running the model, and the caller must, calling ``take`` until it is empty."""
        with self._changed:
            replaced = self._slots[frame.camera] is not None
            self._slots[frame.camera] = frame
            run = not self._running and not self._closed
            if run:
                self._running = True
            return replaced, run

    def take(self):
        """Every waiting frame, in camera order. Empty when none waits, or once closed: then the run ends,
        and the next ``put`` is told to run."""
        with self._changed:
            frames = [] if self._closed else [s for s in self._slots if s is not None]
            self._slots = [None] * len(self._slots)
            if not frames:
                self._running = False
                self._changed.notify_all()
            return frames

    def close(self, timeout=None):
        """Start no more runs, and wait (up to ``timeout`` s) for the one in progress to end."""
        with self._changed:
            self._closed = True
            self._changed.wait_for(lambda: not self._running, timeout)
