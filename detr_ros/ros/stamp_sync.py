"""Pairing a camera's colour frames with its depth frames by header stamp (message_filters is not on PyPI).

Aligned RGB-D drivers stamp both images of a capture alike, so the tolerance only absorbs clock
jitter. The two images travel as separate messages and either may come first: depth frames wait
in a short buffer for their colour frames' detections, and detections whose depth has not come
yet wait for it, for ``wait_ns`` at most, without holding anything else up. Detections whose
depth is later still, or lost, are let go: their 2D detections went out already.
"""

from collections import deque


class StampPairing:
    """Pairs one camera's depth frames with its frames' detections by stamp (ns); not thread-safe.

    Detections take the depth frame nearest their stamp, within ``tolerance_ns``, of those that
    have come; waiting detections take the first one within it that comes. Depth stamps are taken
    to arrive in order (one publisher, one topic), so a depth frame stamped later than waiting
    detections (beyond the tolerance) means that theirs will not come, and one stamped earlier than
    the depth frames kept means that the stamps jumped back (a recording replayed from its start):
    those are dropped, as no frame to come will match them.
    """

    def __init__(self, tolerance_ns, wait_ns, capacity=30):
        self._tolerance_ns = tolerance_ns
        self._wait_ns = wait_ns
        self._depth = deque(maxlen=capacity)  # (stamp_ns, depth frame)
        self._waiting = deque(maxlen=capacity)  # (stamp_ns, deadline_ns, detections)
        self._unpaired_gaps = []  # of detections let go since take_unpaired: ns to the nearest depth stamp

    def _nearest(self, stamp_ns):
        return min(self._depth, key=lambda entry: abs(entry[0] - stamp_ns), default=None)

    def _let_go(self, stamp_ns):
        nearest = self._nearest(stamp_ns)
        self._unpaired_gaps.append(None if nearest is None else abs(nearest[0] - stamp_ns))

    def take_unpaired(self):
        """For each frame's detections let go without depth since the last call, how far (ns) the nearest depth
        frame that came was stamped from them (None: no depth frame had come)."""
        gaps, self._unpaired_gaps = self._unpaired_gaps, []
        return gaps

    def add_detections(self, stamp_ns, detections, now_ns):
        """The depth frame for a frame's detections, or None: then they wait for it, unless it cannot come.

        now_ns: a monotonic clock's time, which ``wait_ns`` counts from."""
        best = self._nearest(stamp_ns)
        if best is not None and abs(best[0] - stamp_ns) <= self._tolerance_ns:
            return best[1]
        if any(depth_stamp > stamp_ns + self._tolerance_ns for depth_stamp, _ in self._depth):
            self._let_go(stamp_ns)
            return None
        if len(self._waiting) == self._waiting.maxlen:
            self._let_go(self._waiting[0][0])
        self._waiting.append((stamp_ns, now_ns + self._wait_ns, detections))
        return None

    def add_depth(self, stamp_ns, depth, now_ns):
        """Keep a depth frame; returns the waiting detections it pairs with, oldest first, and lets go of
        those whose wait is over or whose depth frame this one shows lost."""
        if self._depth and stamp_ns + self._tolerance_ns < self._depth[-1][0]:
            self._depth.clear()
        self._depth.append((stamp_ns, depth))
        paired, waiting = [], deque(maxlen=self._waiting.maxlen)
        for entry in self._waiting:
            waiting_stamp, deadline_ns, detections = entry
            if now_ns > deadline_ns or waiting_stamp + self._tolerance_ns < stamp_ns:
                self._let_go(waiting_stamp)
                continue
            if abs(waiting_stamp - stamp_ns) <= self._tolerance_ns:
                paired.append(detections)
            else:
                waiting.append(entry)
        self._waiting = waiting
        return paired
