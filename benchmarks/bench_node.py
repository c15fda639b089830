"""Detector node benchmark: publisher -> detector node (its own process) -> subscriber, over DDS.

  .venv/bin/python benchmarks/bench_node.py [--model models/synthetic_rtdetr.onnx] [--out PATH]

Measures, at 640x480 rgb8 by default:
  1. end-to-end latency (publish -> Detection2DArray received) p50/p99, one frame at a time;
  2. the node's overhead over bare ``Detector`` inference on the same frames: per frame, the node's
     receive -> publish latency minus its Detector call (both timed inside the node, reported in
     /diagnostics); target under 5% of the inference time. As a cross-check, bare
     ``Detector.detect`` calls in this process alternate with the node's rounds (same load);
  3. frame age at the subscriber under overload (30 Hz in, faster than inference on a CPU);
  4. the node's resident memory after warm-up and after 10,000 received frames (target: flat).
DDS stays on loopback (config/fastdds_loopback.xml) on a domain id of the benchmark's own.
Prints the figures and writes them as JSON.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from detr_ros.ros.loopback_dds import keep_dds_on_loopback
from results import headline, write_result

REPO_ROOT = Path(__file__).resolve().parents[1]
TOPIC = "bench/image"


def hermetic_dds():
    """Loopback-only Fast DDS and a private domain, for this process and the node it starts."""
    # a domain id clear of the test suite's 101..200
    keep_dds_on_loopback(os.environ, 201 + os.getpid() % 30, REPO_ROOT / "config" / "fastdds_loopback.xml")
    os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    prefixes = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    if sys.prefix not in prefixes:
        os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join(p for p in [sys.prefix, *prefixes] if p)


def resident_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentiles(values_ms):
    values = np.asarray(values_ms, np.float64)
    return {"p50": round(float(np.percentile(values, 50)), 2), "p99": round(float(np.percentile(values, 99)), 2),
            "max": round(float(values.max()), 2), "count": int(values.size)}


class DetectorUnderTest:
    """rclpy in this process with a probe node, and the detector node as a subprocess with ``params``."""

    def __init__(self, probe_name, params):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        rclpy.init()
        self.rclpy = rclpy
        self.node = Node(probe_name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._params_file = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
        yaml.safe_dump({"/**": {"ros__parameters": params}}, self._params_file)
        self._params_file.close()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "detr_ros.ros.detector_node", "--ros-args", "--params-file", self._params_file.name],
            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def spin_until(self, predicate, timeout_s):
        deadline = time.monotonic() + timeout_s
        while not predicate() and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"detector exited: {self.process.stderr.read()}")
            self.executor.spin_once(timeout_sec=0.01)
        return predicate()

    def close(self):
        """Stop the detector with Ctrl-C; returns its exit status."""
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=30)
        self.node.destroy_node()
        self.rclpy.try_shutdown()
        os.unlink(self._params_file.name)
        return code


class Bench(DetectorUnderTest):
    """The probe node (publisher + subscribers) and the detector process."""

    def __init__(self, args, frames_rgb):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header
        from vision_msgs.msg import Detection2DArray

        from detr_ros.ros import messages

        params = {"model_path": str(args.model), "providers": ["cpu"], "threads": args.threads,
                  "image_topics": [TOPIC], "publish_debug_image": False}
        super().__init__("bench_node_probe", params)
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.answers = {}  # stamp ns -> arrival ns (probe clock)
        self.diagnostics = []
        self.node.create_subscription(Detection2DArray, "bench/detections", self._on_detections, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self.publisher = self.node.create_publisher(Image, TOPIC, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self.messages = [messages.image_message(Header(frame_id="bench"), rgb, args.encoding) for rgb in frames_rgb]
        self.sent = 0

    def _now_ns(self):
        return self.node.get_clock().now().nanoseconds

    def _on_detections(self, msg):
        self.answers[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = self._now_ns()

    def _on_diagnostics(self, msg):
        if msg.status:
            self.diagnostics.append({kv.key: kv.value for kv in msg.status[0].values})

    def publish(self):
        """Publish the next frame stamped now; returns its stamp."""
        message = self.messages[self.sent % len(self.messages)]
        stamp = self._now_ns()
        message.header.stamp.sec, message.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        self.publisher.publish(message)
        self.sent += 1
        return stamp

    def round_trip_ms(self):
        stamp = self.publish()
        if not self.spin_until(lambda: stamp in self.answers, 60.0):
            raise RuntimeError("the detector did not answer within 60 s")
        return (self.answers[stamp] - stamp) / 1e6

    def latest_diagnostics(self, after):
        """The first diagnostics entry received after index ``after``."""
        self.spin_until(lambda: len(self.diagnostics) > after, 5.0)
        return self.diagnostics[-1]


def measure_overhead(bench, detector, frames_rgb, rounds, per_round):
    """Alternate bare Detector.detect calls with one-at-a-time node round trips on the same frames.

    Returns bare call times, round trips, and the node's per-period (latency, inference, overhead) p50s.
    """
    bare_ms, round_trip_ms, node_periods = [], [], []
    for _ in range(rounds):
        for index in range(per_round):
            started = time.perf_counter()
            detector.detect(frames_rgb[index % len(frames_rgb)], "rgb")
            bare_ms.append((time.perf_counter() - started) * 1e3)
        seen = len(bench.diagnostics)
        for _ in range(per_round):
            round_trip_ms.append(bench.round_trip_ms())
        # The diagnostics period that follows holds (mostly) this round's frames.
        status = bench.latest_diagnostics(seen)
        if status["latency_p50_ms"] != "n/a":
            node_periods.append([float(status[key]) for key in
                                 ("latency_p50_ms", "inference_p50_ms", "node_overhead_p50_ms")])
    return bare_ms, round_trip_ms, np.array(node_periods)


def measure_overload(bench, rate_hz, seconds):
    """Publish at ``rate_hz`` for ``seconds``; frame age of each answer at the subscriber."""
    bench.answers.clear()
    seen = len(bench.diagnostics)
    stamps = []
    period = 1.0 / rate_hz
    next_time = time.monotonic()
    end = next_time + seconds
    while time.monotonic() < end:
        stamps.append(bench.publish())
        next_time += period
        bench.spin_until(lambda: time.monotonic() >= next_time, period + 1.0)
    bench.spin_until(lambda: False, 1.5)
    published = set(stamps)
    ages = [(arrival - stamp) / 1e6 for stamp, arrival in bench.answers.items() if stamp in published]
    status = bench.latest_diagnostics(seen)
    return ages, len(stamps), status


def measure_memory(bench, frames):
    """RSS after warm-up and after the node has received ``frames`` more frames (published flat out)."""
    start_received = int(bench.latest_diagnostics(len(bench.diagnostics))["received"])
    start_mib = resident_mib(bench.process.pid)
    samples = [start_mib]
    target = start_received + frames
    received = start_received
    last_sample = time.monotonic()
    while received < target:
        bench.publish()
        bench.executor.spin_once(timeout_sec=0.001)
        if bench.diagnostics:
            received = int(bench.diagnostics[-1]["received"])
        if time.monotonic() - last_sample > 5.0:
            samples.append(resident_mib(bench.process.pid))
            last_sample = time.monotonic()
    end_mib = resident_mib(bench.process.pid)
    return start_mib, end_mib, samples + [end_mib], received - start_received


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "synthetic_rtdetr.onnx")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--encoding", default="rgb8")
    parser.add_argument("--threads", type=int, default=0, help="inference threads for the node and the bare runs")
    parser.add_argument("--rounds", type=int, default=6, help="alternating bare/node rounds")
    parser.add_argument("--per-round", type=int, default=10, help="frames per round")
    parser.add_argument("--overload-rate", type=float, default=30.0)
    parser.add_argument("--overload-seconds", type=float, default=10.0)
    parser.add_argument("--memory-frames", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default: benchmarks/results/bench_node.json)")
    args = parser.parse_args(argv)
    hermetic_dds()

    from detr_ros.runtime import Detector
    from detr_ros.synthetic.video import SceneVideo

    video = SceneVideo(args.width, args.height, seed=0)
    frames_rgb = [cv2.cvtColor(video.frame(i)[0], cv2.COLOR_BGR2RGB) for i in range(8)]
    detector = Detector(args.model, threads=args.threads or None)
    detector.detect(frames_rgb[0], "rgb")  # warm-up
    bench = Bench(args, frames_rgb)
    try:
        if not bench.spin_until(lambda: bench.publisher.get_subscription_count() > 0, 60.0):
            raise RuntimeError("the detector did not subscribe within 60 s")
        # A best-effort subscription may not have matched the publisher yet: repeat the first frame.
        for _ in range(120):
            bench.publish()
            if bench.spin_until(lambda: bench.answers, 0.5):
                break
        for _ in range(3):
            bench.round_trip_ms()  # warm-up
        bare_ms, round_trip_ms, node_periods = measure_overhead(bench, detector, frames_rgb, args.rounds,
                                                               args.per_round)
        ages_ms, published, overload_status = measure_overload(bench, args.overload_rate, args.overload_seconds)
        start_mib, end_mib, samples_mib, memory_frames = measure_memory(bench, args.memory_frames)
    finally:
        exit_code = bench.close()

    bare_p50 = float(np.percentile(bare_ms, 50))
    node_latency, node_inference, node_overhead = (float(v) for v in np.median(node_periods, axis=0))
    result = {
        "model": str(args.model),
        "image": f"{args.width}x{args.height} {args.encoding}",
        "provider": overload_status["provider"],
        "bare_detect_ms": percentiles(bare_ms),
        "end_to_end_latency_ms": percentiles(round_trip_ms),
        "node_receive_to_publish_p50_ms": round(node_latency, 2),
        "node_inference_p50_ms": round(node_inference, 2),
        "node_overhead_p50_ms": round(node_overhead, 2),
        "node_overhead_fraction_of_inference": round(node_overhead / node_inference, 4),
        "node_inference_over_bare_detect": round(node_inference / bare_p50, 3),
        "end_to_end_overhead_fraction_of_inference": round((float(np.percentile(round_trip_ms, 50)) - bare_p50)
                                                           / bare_p50, 4),
        "overload": {"rate_hz": args.overload_rate, "seconds": args.overload_seconds, "published": published,
                     "answered": len(ages_ms), "frame_age_ms": percentiles(ages_ms),
                     "node_dropped_total": int(overload_status["dropped"])},
        "memory_mib": {"after_warm_up": round(start_mib, 1), "after_frames": round(end_mib, 1),
                       "frames": memory_frames, "growth": round(end_mib - start_mib, 1),
                       "samples": [round(s, 1) for s in samples_mib]},
        "detector_exit_code": exit_code,
    }
    print(f"bench_node: {result['image']} on {result['provider']} ({args.model.name})")
    print(f"  end-to-end latency      p50 {result['end_to_end_latency_ms']['p50']} ms, "
          f"p99 {result['end_to_end_latency_ms']['p99']} ms")
    print(f"  node receive->publish   p50 {result['node_receive_to_publish_p50_ms']} ms, of which the Detector "
          f"call {result['node_inference_p50_ms']} ms: overhead {result['node_overhead_p50_ms']} ms = "
          f"{100 * result['node_overhead_fraction_of_inference']:.1f}% of inference (target < 5%)")
    print(f"  bare Detector.detect    p50 {result['bare_detect_ms']['p50']} ms in this process "
          f"(node's call / bare = {result['node_inference_over_bare_detect']})")
    overload = result["overload"]
    print(f"  overload {args.overload_rate:g} Hz for {args.overload_seconds:g} s: {overload['answered']} of "
          f"{overload['published']} answered, frame age p50 {overload['frame_age_ms']['p50']} ms, "
          f"p99 {overload['frame_age_ms']['p99']} ms, max {overload['frame_age_ms']['max']} ms")
    memory = result["memory_mib"]
    print(f"  resident memory         {memory['after_warm_up']} MiB after warm-up, {memory['after_frames']} MiB "
          f"after {memory['frames']} more frames ({memory['growth']:+} MiB)")
    end_to_end = result["end_to_end_latency_ms"]
    headlines = [
        headline("node overhead (receive to publish, less the Detector call) / inference",
                 f"{100 * result['node_overhead_fraction_of_inference']:.1f}% "
                 f"({result['node_overhead_p50_ms']} of {result['node_inference_p50_ms']} ms)", "< 3%"),
        headline("Detector call inside the node / bare Detector.detect in one process",
                 f"{result['node_inference_over_bare_detect']:.3f}", "<= 1.05"),
        headline("end-to-end latency, camera publish to detections received", f"p50 {end_to_end['p50']} ms, "
                 f"p99 {end_to_end['p99']} ms"),
        headline(f"frames answered at {overload['rate_hz']:g} Hz for {overload['seconds']:g} s",
                 f"{overload['answered']} of {overload['published']}, frame age p99 {overload['frame_age_ms']['p99']} ms"),
        headline(f"resident memory growth over {memory['frames']} frames", f"{memory['growth']:+} MiB"),
    ]
    write_result("bench_node", f"Camera -> detector node -> subscriber ({result['image']}, {Path(result['model']).name}, "
                 f"{result['provider']})", result, headlines, args.out)
    return 0 if exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
