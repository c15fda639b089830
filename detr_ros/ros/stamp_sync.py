"""Pairing a camera's colour frames with its depth frames by header stamp (message_filters is not on PyPI).

Depth frames wait in a short buffer; a colour frame takes the one whose stamp is nearest its own,
if within the tolerance. Aligned RGB-D drivers stamp both images of a capture alike, so the
tolerance only absorbs clock jitter. The two images travel as separate messages, and the colour
one may be through the model before its depth has arrived, so a frame may wait a little for it;
a frame whose depth is later still, or lost, gets none (the node has published its 2D detections
already).
"""

import threading
from collections import deque


class StampBuffer:
    """The last ``capacity`` items of one stream by stamp (ns); thread-safe (callback puts, worker finds)."""

    def __init__(self, capacity=30):
        self._items = deque(maxlen=capacity)
        self._arrived = threading.Condition()

    def put(self, stamp_ns, item):
        with self._arrived:
            self._items.append((stamp_ns, item))
            self._arrived.notify_all()

    def _nearest(self, stamp_ns, tolerance_ns):
        best = min(self._items, key=lambda entry: abs(entry[0] - stamp_ns), default=None)
        return best if best is not None and abs(best[0] - stamp_ns) <= tolerance_ns else None

    def nearest(self, stamp_ns, tolerance_ns, wait_s=0.0):
        """The item whose stamp is nearest ``stamp_ns``, within ``tolerance_ns``, or None; waits up to
        ``wait_s`` seconds for one to arrive unless a later one has come (then none will)."""
        with self._arrived:
            self._arrived.wait_for(lambda: self._nearest(stamp_ns, tolerance_ns) is not None or any(
                stamp > stamp_ns + tolerance_ns for stamp, _ in self._items), wait_s)
            best = self._nearest(stamp_ns, tolerance_ns)
        return None if best is None else best[1]
