"""Counters and timings of one camera stream, summarised for /diagnostics.

The callbacks count what arrives and what is rejected, and record each publish with its latency
(receive to publish) and the shares of it: the wait before the model (decoding and, under load,
earlier frames still being inferred), the model's (the Detector call) and the publish call's (the
DDS write of the serialised array); and the frame's age (header stamp to publish). ``summary``
returns rates and percentiles over the period since the previous summary, plus running totals, so
an operator sees the current state and tests can read exact counts.
"""

import threading
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StreamSummary:
    """One diagnostics period of one camera. Rates in Hz, times in milliseconds (nan when no frame)."""

    period_s: float
    input_hz: float
    output_hz: float
    latency_p50_ms: float
    latency_p99_ms: float
    inference_p50_ms: float
    overhead_p50_ms: float  # latency minus inference, per frame: what the node adds to the model
    wait_p50_ms: float  # receive to the model's start, a part of the overhead: decoding, earlier frames
    publish_p50_ms: float  # the publish call, a part of the overhead: the DDS write
    age_p50_ms: float
    age_max_ms: float
    received_total: int
    published_total: int
    dropped_total: int
    rejected_total: int
    rejected_in_period: int


def _percentile(samples, q):
    return float(np.percentile(samples, q)) if samples else float("nan")


class StreamStatistics:
    """Thread-safe: the image callbacks and the diagnostics timer run in different threads."""

    def __init__(self, now_ns):
        self._lock = threading.Lock()
        self._received = self._published = self._dropped = self._rejected = 0
        self._period_start_ns = now_ns
        self._period_counts = (0, 0, 0)  # received, published, rejected at the period start
        self._start_samples()

    def _start_samples(self):
        """Empty the period's per-frame timings (ms)."""
        self._latencies_ms, self._waits_ms, self._inference_ms, self._publish_ms, self._ages_ms = [], [], [], [], []

    def count_received(self):
        with self._lock:
            self._received += 1

    def count_rejected(self):
        with self._lock:
            self._rejected += 1

    def count_dropped(self):
        with self._lock:
            self._dropped += 1

    def record_published(self, latency_ns, wait_ns, inference_ns, publish_ns, age_ns):
        with self._lock:
            self._published += 1
            self._latencies_ms.append(latency_ns / 1e6)
            self._waits_ms.append(wait_ns / 1e6)
            self._inference_ms.append(inference_ns / 1e6)
            self._publish_ms.append(publish_ns / 1e6)
            self._ages_ms.append(age_ns / 1e6)

    def summary(self, now_ns):
        """Summarise the period since the last call and start a new one."""
        with self._lock:
            period_s = max((now_ns - self._period_start_ns) / 1e9, 1e-9)
            received0, published0, rejected0 = self._period_counts
            result = StreamSummary(
                period_s=period_s,
                input_hz=(self._received - received0) / period_s,
                output_hz=(self._published - published0) / period_s,
                latency_p50_ms=_percentile(self._latencies_ms, 50),
                latency_p99_ms=_percentile(self._latencies_ms, 99),
                inference_p50_ms=_percentile(self._inference_ms, 50),
                overhead_p50_ms=_percentile([a - b for a, b in zip(self._latencies_ms, self._inference_ms)], 50),
                wait_p50_ms=_percentile(self._waits_ms, 50),
                publish_p50_ms=_percentile(self._publish_ms, 50),
                age_p50_ms=_percentile(self._ages_ms, 50),
                age_max_ms=max(self._ages_ms, default=float("nan")),
                received_total=self._received,
                published_total=self._published,
                dropped_total=self._dropped,
                rejected_total=self._rejected,
                rejected_in_period=self._rejected - rejected0,
            )
            self._period_start_ns = now_ns
            self._period_counts = (self._received, self._published, self._rejected)
            self._start_samples()
            return result
