"""Detector node benchmark: publisher -> detector node (its own process) -> subscriber, over DDS.

  .venv/bin/python benchmarks/bench_node.py [--model models/synthetic_rtdetr.onnx] [--out PATH]

Measures, at 640x480 rgb8 by default:
  1. end-to-end latency (publish -> Detection2DArray received) p50/p99, one frame at a time;
  2. the node's overhead over bare ``Detector`` inference on the same frames: per frame, the node's
     receive -> publish latency minus its Detector call (both timed inside the node, reported in
     /diagnostics), with its parts: the wait before the model and the publish call; target under 3%
     of the inference time. Rounds of bare ``Detector.detect`` calls
     in this process, with the node's model file, threads and thread spinning, alternate with the
     node's rounds, both at camera rate (--rate): the node's Detector call should take what the bare
     one takes (target within 5%). CPU time per frame is measured for both, the node's process
     (decoding, DDS, inference) and the bare calls, gaps between frames included: a thread spinning
     between frames shows there;
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

from detr_ros.ros.detector_parameters import SPECS
from detr_ros.ros.loopback_dds import keep_dds_on_loopback
from detr_ros.runtime.cpu_int8 import choose_cpu_model
from detr_ros.runtime.detector import THREAD_SPINNING
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

    def spin_until(self, predicate, timeout_s, poll_s=0.01):
        """Spin until ``predicate()``; poll_s bounds each wait, so a predicate on the clock is met on time."""
        deadline = time.monotonic() + timeout_s
        while not predicate() and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"detector exited: {self.process.stderr.read()}")
            self.executor.spin_once(timeout_sec=poll_s)
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

    def __init__(self, args, frames_rgb, model_path):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import Header
        from vision_msgs.msg import Detection2DArray

        from detr_ros.ros import messages

        params = {"model_path": str(model_path), "providers": ["cpu"], "threads": args.threads,
                  "thread_spinning": args.thread_spinning, "cpu_int8": False,
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
        # Waits block until the answer arrives: a probe waking every few ms would take CPU time from
        # the inference it measures, as a camera driver does not.
        if not self.spin_until(lambda: stamp in self.answers, 60.0, poll_s=1.0):
            raise RuntimeError("the detector did not answer within 60 s")
        return (self.answers[stamp] - stamp) / 1e6

    def latest_diagnostics(self, after):
        """The first diagnostics entry received after index ``after``."""
        self.spin_until(lambda: len(self.diagnostics) > after, 5.0)
        return self.diagnostics[-1]


def process_cpu_s(pid):
    """User + system CPU seconds a process has used, all its threads together."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_overhead(bench, detector, frames_rgb, rounds, per_round, rate_hz):
    """Alternate rounds of bare Detector.detect calls with rounds of node round trips on the same
    frames, each frame at its camera-rate tick (a round trip waits for its answer first).

    Returns bare call times, round trips, the node's per-period (latency, inference, overhead, wait
    before the model, publish call) p50s with the p50 of the bare calls just before, and CPU ms per
    frame of each round: bare (this process) and node (its process).
    """
    bare_ms, round_trip_ms, node_periods, bare_cpu_ms, node_cpu_ms = [], [], [], [], []
    period = 1.0 / rate_hz
    for _ in range(rounds):
        round_start = len(bare_ms)
        start, cpu_start = time.monotonic(), time.process_time()
        for index in range(per_round):
            started = time.perf_counter()
            detector.detect(frames_rgb[index % len(frames_rgb)], "rgb")
            bare_ms.append((time.perf_counter() - started) * 1e3)
            time.sleep(max(0.0, start + (index + 1) * period - time.monotonic()))
        bare_cpu_ms.append((time.process_time() - cpu_start) * 1e3 / per_round)
        seen = len(bench.diagnostics)
        start, cpu_start = time.monotonic(), process_cpu_s(bench.process.pid)
        for index in range(per_round):
            round_trip_ms.append(bench.round_trip_ms())
            time.sleep(max(0.0, start + (index + 1) * period - time.monotonic()))
        node_cpu_ms.append((process_cpu_s(bench.process.pid) - cpu_start) * 1e3 / per_round)
        # The diagnostics period that follows holds (mostly) this round's frames.
        status = bench.latest_diagnostics(seen)
        if status["latency_p50_ms"] != "n/a":
            node_periods.append([float(status[key]) for key in
                                 ("latency_p50_ms", "inference_p50_ms", "node_overhead_p50_ms", "wait_p50_ms",
                                  "publish_p50_ms")]
                                + [float(np.median(bare_ms[round_start:]))])
    return bare_ms, round_trip_ms, np.array(node_periods), bare_cpu_ms, node_cpu_ms


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
    parser.add_argument("--thread-spinning", default=SPECS["thread_spinning"].default, choices=THREAD_SPINNING,
                        help="how idle inference threads wait, for the node and the bare runs (default: the node's)")
    parser.add_argument("--fp32", action="store_true",
                        help="run --model itself, not MODEL.int8.onnx beside it (the node's cpu_int8: false)")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate (Hz) of the alternating rounds")
    parser.add_argument("--rounds", type=int, default=12,
                        help="alternating bare/node rounds (figures are their medians)")
    parser.add_argument("--per-round", type=int, default=30,
                        help="frames per round (at --rate, about one diagnostics period)")
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
    model_path = choose_cpu_model(args.model, ["cpu"], cpu_int8=not args.fp32).path
    detector = Detector(model_path, threads=args.threads or None, thread_spinning=args.thread_spinning)
    detector.detect(frames_rgb[0], "rgb")  # warm-up
    bench = Bench(args, frames_rgb, model_path)
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
        bare_ms, round_trip_ms, node_periods, bare_cpu_ms, node_cpu_ms = measure_overhead(
            bench, detector, frames_rgb, args.rounds, args.per_round, args.rate)
        ages_ms, published, overload_status = measure_overload(bench, args.overload_rate, args.overload_seconds)
        start_mib, end_mib, samples_mib, memory_frames = measure_memory(bench, args.memory_frames)
    finally:
        exit_code = bench.close()

    bare_p50 = float(np.percentile(bare_ms, 50))
    node_latency, node_inference, node_overhead, node_wait, node_publish, _ = (
        float(v) for v in np.median(node_periods, axis=0))
    # The load of a shared machine drifts: each node round is compared with the bare round before it.
    node_over_bare = float(np.median(node_periods[:, 1] / node_periods[:, 5]))
    result = {
        "model": str(model_path),
        "image": f"{args.width}x{args.height} {args.encoding}",
        "provider": overload_status["provider"],
        "threads": args.threads or "onnxruntime's default",
        "thread_spinning": args.thread_spinning,
        "rate_hz": args.rate,
        "cpu_ms_per_frame": {"bare_detect": round(float(np.median(bare_cpu_ms)), 2),
                             "node_process": round(float(np.median(node_cpu_ms)), 2)},
        "bare_detect_ms": percentiles(bare_ms),
        "end_to_end_latency_ms": percentiles(round_trip_ms),
        "node_receive_to_publish_p50_ms": round(node_latency, 2),
        "node_inference_p50_ms": round(node_inference, 2),
        "node_overhead_p50_ms": round(node_overhead, 2),
        "node_overhead_fraction_of_inference": round(node_overhead / node_inference, 4),
        "node_wait_p50_ms": round(node_wait, 2),
        "node_publish_call_p50_ms": round(node_publish, 2),
        "node_overhead_less_publish_fraction_of_inference": round((node_overhead - node_publish) / node_inference, 4),
        "node_inference_over_bare_detect": round(node_over_bare, 3),
        "node_inference_over_bare_detect_of_medians": round(node_inference / bare_p50, 3),
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
    print(f"bench_node: {result['image']} on {result['provider']} ({model_path.name}), threads "
          f"{result['threads']}, thread spinning {args.thread_spinning}, {args.rate:g} Hz")
    print(f"  end-to-end latency      p50 {result['end_to_end_latency_ms']['p50']} ms, "
          f"p99 {result['end_to_end_latency_ms']['p99']} ms")
    print(f"  node receive->publish   p50 {result['node_receive_to_publish_p50_ms']} ms, of which the Detector "
          f"call {result['node_inference_p50_ms']} ms: overhead {result['node_overhead_p50_ms']} ms = "
          f"{100 * result['node_overhead_fraction_of_inference']:.1f}% of inference (target < 3%)")
    print(f"  of the overhead         the wait before the model (decoding) "
          f"{result['node_wait_p50_ms']} ms; the publish call (the DDS write of the serialised array) "
          f"{result['node_publish_call_p50_ms']} ms; all but the publish call "
          f"{100 * result['node_overhead_less_publish_fraction_of_inference']:.1f}% of inference")
    print(f"  bare Detector.detect    p50 {result['bare_detect_ms']['p50']} ms in this process "
          f"(node's call / bare: {result['node_inference_over_bare_detect']}, median of per-round ratios)")
    cpu = result["cpu_ms_per_frame"]
    print(f"  CPU time per frame      node process {cpu['node_process']} ms, bare Detector.detect "
          f"{cpu['bare_detect']} ms (at {args.rate:g} Hz, gaps included)")
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
        headline("of the node overhead: the wait before the model (decoding); "
                 "the publish call (the DDS write of the serialised array); all but the publish call / inference",
                 f"{result['node_wait_p50_ms']} ms; {result['node_publish_call_p50_ms']} ms; "
                 f"{100 * result['node_overhead_less_publish_fraction_of_inference']:.1f}%"),
        headline("Detector call inside the node / bare Detector.detect in one process, same file, settings and "
                 "camera rate (median of per-round ratios)", f"{result['node_inference_over_bare_detect']:.3f} "
                 f"(p50s {result['node_inference_p50_ms']} / {result['bare_detect_ms']['p50']} ms)", "<= 1.05"),
        headline(f"CPU time per frame at {args.rate:g} Hz, node process / bare Detector.detect",
                 f"{cpu['node_process']} / {cpu['bare_detect']} ms"),
        headline("inference settings", f"threads {result['threads']}, thread spinning {args.thread_spinning}"),
        headline("end-to-end latency, camera publish to detections received", f"p50 {end_to_end['p50']} ms, "
                 f"p99 {end_to_end['p99']} ms"),
        headline(f"frames answered at {overload['rate_hz']:g} Hz for {overload['seconds']:g} s",
                 f"{overload['answered']} of {overload['published']}, frame age p99 {overload['frame_age_ms']['p99']} ms"),
        headline(f"resident memory growth over {memory['frames']} frames", f"{memory['growth']:+} MiB"),
    ]
    write_result("bench_node", f"Camera -> detector node -> subscriber ({result['image']}, {model_path.name}, "
                 f"{result['provider']})", result, headlines, args.out)
    return 0 if exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
