"""Latency of ONNX models through the runtime (``detr-ros bench``).

A model whose signature the runtime knows runs through ``Detector.detect_batch`` on synthetic
camera frames and is timed per stage: pre-processing, inference, post-processing. Any other graph
(a plain export of another implementation, say) is fed random inputs of its declared shapes at
the same image size and timed for inference alone. With a second model (``compare``) the two alternate within
the run, so that drift (thermal, other processes) hits both, and ``ratio`` is the first one's median
inference latency over the second's. With ``profile`` N, N more alternating runs in sessions with
onnxruntime's profiler on give each model's kernel time by operator type (kept out of the latency
figures: profiling slows a run down). No torch here: this runs on the robot too.
"""

import bisect
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from detr_ros.errors import ConfigError, ModelFileError
from detr_ros.runtime import Detector, formats
from detr_ros.runtime.detector import session_options
from detr_ros.runtime.model_file import check_model_file
from detr_ros.runtime.cpu import describe_cpu, int8_weight_bits
from detr_ros.runtime.providers import resolve_providers
from detr_ros.synthetic import SceneGenerator

STAGES = ("preprocess", "inference", "postprocess", "total")
COVERS = {
    "preprocess": "resize + colour order + scaling of uint8 frames into the input buffer",
    "inference": "onnxruntime session.run",
    "postprocess": "threshold, sort, class filter, boxes to source pixels",
    "total": "one detect_batch call, end to end",
}
FOREIGN_COVERS = "session.run only, on random inputs of the declared shapes (no pre/post-processing)"
PROFILE_TABLE_ROWS = 12


class RuntimeTarget:
    """A model the runtime knows: timed per stage through Detector.detect_batch."""

    foreign = False

    def __init__(self, path, providers, threads, input_size, frames, format_options):
        self.detector = Detector(path, providers, threads=threads, input_size=input_size, score_threshold=0.3,
                                 **format_options)
        self.frames = frames
        self.provider = self.detector.provider
        self.input_size = self.detector.input_size

    def step(self):
        timings = {}
        started = time.perf_counter()
        self.detector.detect_batch(self.frames, "bgr", timings=timings)
        timings["total_s"] = time.perf_counter() - started
        return {stage: timings[f"{stage}_s"] for stage in STAGES}


class GraphTarget:
    """A graph of unknown signature: random inputs of its declared shapes, session.run timed alone."""

    foreign = True

    def __init__(self, session, batch, input_size):
        self.session = session
        self.provider = session.get_providers()[0]
        self.input_size = input_size
        rng = np.random.default_rng(0)
        self.feeds = {arg.name: self._random_input(arg, batch, input_size, rng) for arg in session.get_inputs()}

    @staticmethod
    def _random_input(arg, batch, input_size, rng):
        shape = []
        for axis, dim in enumerate(arg.shape):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            elif axis == 0:
                shape.append(batch)
            elif len(arg.shape) == 4 and axis >= 2:
                shape.append(input_size[axis - 2])
            else:
                shape.append(1)
        if "int" in arg.type:
            return rng.integers(1, 640, size=shape).astype(np.int64 if "int64" in arg.type else np.int32)
        dtype = np.float16 if "float16" in arg.type else np.float32
        return rng.random(shape, dtype=np.float32).astype(dtype)

    def step(self):
        started = time.perf_counter()
        self.session.run(None, self.feeds)
        return {"inference": time.perf_counter() - started}


def open_target(path, providers, threads, frames, input_size, declared_input_size, format_options):
    """RuntimeTarget for a known signature, GraphTarget for anything onnxruntime can load.

    input_size: (H, W) of a foreign graph's dynamic image input; declared_input_size: the size
    given for graphs with a dynamic image size and no metadata, or None.
    """
    check_model_file(path)
    available, _ = resolve_providers(providers, ort.get_available_providers())
    try:
        session = ort.InferenceSession(str(path), session_options(threads), providers=available)
    except Exception as error:  # onnxruntime's own exception types
        raise ModelFileError(f"{path}: onnxruntime cannot load it: {str(error).splitlines()[0]}") from None
    if not format_options:
        try:
            formats.recognise(session.get_inputs(), session.get_outputs(), path,
                              session.get_modelmeta().custom_metadata_map)
        except ModelFileError:
            return GraphTarget(session, len(frames), input_size)
    del session
    return RuntimeTarget(path, providers, threads, declared_input_size, frames, format_options)


def operator_times(events, skip_runs):
    """onnxruntime profile events -> ({op_type: {"ms", "nodes"}}, kernel ms a run), medians over the
    runs after the first skip_runs (warm-up)."""
    runs = sorted((event["ts"], event["ts"] + event["dur"]) for event in events
                  if event.get("name") == "model_run")[skip_runs:]
    starts = [start for start, _ in runs]
    per_run = [collections.Counter() for _ in runs]
    nodes = collections.defaultdict(set)
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        index = bisect.bisect_right(starts, event["ts"]) - 1
        if index < 0 or event["ts"] > runs[index][1]:
            continue
        op_type = event["args"]["op_name"]
        per_run[index][op_type] += event["dur"]
        nodes[op_type].add(event["name"])
    operators = {op_type: {"ms": round(float(np.median([run[op_type] for run in per_run])) / 1e3, 4),
                           "nodes": len(names)} for op_type, names in nodes.items()}
    kernel_ms = round(float(np.median([sum(run.values()) for run in per_run])) / 1e3, 4)
    return dict(sorted(operators.items(), key=lambda item: -item[1]["ms"])), kernel_ms


def profile_operators(paths, runs, providers, threads, batch, input_size):
    """Kernel time by operator type of each model, over ``runs`` alternating runs on random inputs
    of the declared shapes (kernel times do not depend on the pixels)."""
    available, _ = resolve_providers(providers, ort.get_available_providers())
    warmup = 1
    with tempfile.TemporaryDirectory() as folder:
        targets = []
        for index, path in enumerate(paths):
            options = session_options(threads)
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(folder) / f"model{index}")
            session = ort.InferenceSession(str(path), options, providers=available)
            targets.append(GraphTarget(session, batch, input_size))
        run_alternating(targets, runs, warmup)
        return [operator_times(json.loads(Path(target.session.end_profiling()).read_text()), warmup)
                for target in targets]


def summarise(samples, batch):
    """samples: {stage: [seconds]} -> {stage: {min_ms, p50_ms, p90_ms, p99_ms, fps}}."""
    result = {}
    for stage, seconds in samples.items():
        milliseconds = np.asarray(seconds) * 1e3
        p50, p90, p99 = np.percentile(milliseconds, [50, 90, 99])
        result[stage] = {"min_ms": round(float(milliseconds.min()), 4), "p50_ms": round(float(p50), 4),
                         "p90_ms": round(float(p90), 4), "p99_ms": round(float(p99), 4),
                         "fps": round(float(batch * 1e3 / milliseconds.mean()), 2)}
    return result


def run_alternating(targets, iterations, warmup):
    """Each iteration runs every target once, in an order that alternates, so drift hits all of them."""
    for _ in range(warmup):
        for target in targets:
            target.step()
    samples = [{} for _ in targets]
    for iteration in range(iterations):
        order = range(len(targets)) if iteration % 2 == 0 else reversed(range(len(targets)))
        for index in order:
            for stage, seconds in targets[index].step().items():
                samples[index].setdefault(stage, []).append(seconds)
    return samples


def format_table(report):
    settings = report["settings"]
    lines = [f"detr-ros bench: batch {settings['batch']}, threads {settings['threads'] or 'default'}, "
             f"{settings['iterations']} timed iterations after {settings['warmup']} warm-up"
             f"{', models alternating' if 'compare' in report else ''}; known models get "
             f"{settings['frame_size'][0]}x{settings['frame_size'][1]} BGR synthetic frames",
             f"CPU: {settings['cpu']}; INT8 files for it: {settings['int8_weight_bits_for_this_cpu']}-bit weights",
             f"{'model':<32} {'provider':<10} {'stage':<12} {'min ms':>9} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} "
             f"{'fps':>8}  covers"]
    for role in ("model", "compare"):
        if role not in report:
            continue
        entry = report[role]
        name = Path(entry["path"]).name + (" (foreign)" if entry["foreign"] else "")
        provider = entry["provider"].replace("ExecutionProvider", "")
        for stage, figures in entry["stages"].items():
            covers = FOREIGN_COVERS if entry["foreign"] else COVERS[stage]
            lines.append(f"{name:<32.32} {provider:<10} {stage:<12} {figures['min_ms']:>9.2f} {figures['p50_ms']:>9.2f} "
                         f"{figures['p90_ms']:>9.2f} {figures['p99_ms']:>9.2f} {figures['fps']:>8.2f}  {covers}")
            name = provider = ""
    if "pre_post_share_of_inference" in report["model"]:
        lines.append(f"pre + post-processing / inference (p50) of MODEL: "
                     f"{100 * report['model']['pre_post_share_of_inference']:.2f}%")
    if "ratio" in report:
        lines.append(f"ratio = MODEL / OTHER median inference latency: {report['ratio']:.3f} "
                     f"(median of per-iteration ratios: {report['paired_ratio']:.3f}; of the fastest runs: "
                     f"{report['ratio_of_minimums']:.3f})")
    if "operators" in report["model"]:
        lines.extend(format_profile(report))
    return "\n".join(lines)


def format_profile(report):
    roles = [role for role in ("model", "compare") if role in report]
    lines = [f"kernel time by operator type, median of {report['settings']['profile']} profiled runs "
             f"(onnxruntime profiler; operators' own time, not the executor's between them)",
             f"{'operator':<24}" + "".join(f" {Path(report[role]['path']).name[:20]:>20} {'nodes':>5}" for role in roles)]
    operators = sorted({op for role in roles for op in report[role]["operators"]},
                       key=lambda op: (-max(report[role]["operators"].get(op, {"ms": 0})["ms"] for role in roles), op))
    for op in operators[:PROFILE_TABLE_ROWS]:
        cells = [report[role]["operators"].get(op, {"ms": 0.0, "nodes": 0}) for role in roles]
        lines.append(f"{op:<24}" + "".join(f" {cell['ms']:>17.2f} ms {cell['nodes']:>5}" for cell in cells))
    lines.append(f"{'all operators':<24}" + "".join(f" {report[role]['kernel_ms']:>17.2f} ms {'':>5}"
                                                   for role in roles))
    return lines


def benchmark(model, *, compare=None, providers="cpu", batch=1, threads=None, iterations=50, warmup=5,
              frame_size=(720, 1280), input_size=None, profile=0, format_options=None):
    """Time ``model`` (and ``compare``, alternating with it); returns the report dict.

    providers: ordered execution providers; batch: images per call; threads: CPU intra-op threads
    (None: onnxruntime's); iterations, warmup: timed and untimed calls per model; frame_size: (H, W)
    of the synthetic frames fed to known models; input_size: (H, W) for graphs with a dynamic image
    size and no metadata; profile: how many more runs profile the kernels by operator type (0: none);
    format_options: Detector keyword arguments for reading a foreign file (model_format, resize_mode,
    normalization): with them, a file is always timed through the runtime.
    """
    if batch < 1 or iterations < 1 or warmup < 0 or profile < 0:
        raise ConfigError("--batch and --iterations must be positive, --warmup and --profile not negative")
    frame_height, frame_width = frame_size
    generator = SceneGenerator(frame_width, frame_height, seed=0)
    frames = [generator.image(index)[0] for index in range(batch)]
    fallback_size = input_size or (640, 640)
    format_options = format_options or {}
    model_target = open_target(model, providers, threads, frames, fallback_size, input_size, format_options)
    image_size = model_target.input_size or fallback_size
    targets = [model_target]
    if compare is not None:
        targets.append(open_target(compare, providers, threads, frames, image_size, input_size, format_options))
    samples = run_alternating(targets, iterations, warmup)
    report = {"settings": {"batch": batch, "threads": threads, "providers": providers, "iterations": iterations,
                           "warmup": warmup, "profile": profile, "frame_size": [frame_height, frame_width],
                           "cpu": describe_cpu(), "int8_weight_bits_for_this_cpu": int8_weight_bits()}}
    for role, target, target_samples in zip(("model", "compare"), targets, samples):
        stages = summarise(target_samples, batch)
        report[role] = {"path": str(model if role == "model" else compare), "foreign": target.foreign,
                        "provider": target.provider, "input_size": list(target.input_size or ()),
                        "stages": stages,
                        "covers": {s: FOREIGN_COVERS if target.foreign else COVERS[s] for s in stages}}
        if not target.foreign:
            report[role]["pre_post_share_of_inference"] = round(
                (stages["preprocess"]["p50_ms"] + stages["postprocess"]["p50_ms"]) / stages["inference"]["p50_ms"], 5)
    if len(targets) == 2:
        report["ratio"] = round(report["model"]["stages"]["inference"]["p50_ms"]
                                / report["compare"]["stages"]["inference"]["p50_ms"], 4)
        # Each iteration's two runs are adjacent in time: the median of their ratios cancels slow drift
        # (other processes, clocks) better than the ratio of the two medians on a shared machine.
        pairs = np.asarray(samples[0]["inference"]) / np.asarray(samples[1]["inference"])
        report["paired_ratio"] = round(float(np.median(pairs)), 4)
        # The fastest run of each is the one least disturbed by other tenants of the machine.
        report["ratio_of_minimums"] = round(report["model"]["stages"]["inference"]["min_ms"]
                                            / report["compare"]["stages"]["inference"]["min_ms"], 4)
    if profile:
        paths = [model] + ([compare] if compare is not None else [])
        for role, (operators, kernel_ms) in zip(("model", "compare"),
                                                profile_operators(paths, profile, providers, threads, batch, image_size)):
            report[role]["operators"] = operators
            report[role]["kernel_ms"] = kernel_ms
    return report
