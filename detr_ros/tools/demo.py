"""The real system for a bounded time, summarised in a folder (``detr-ros demo``).

Starts the nodes as separate ROS 2 processes talking over DDS: ``synthetic_camera`` (a synthetic
scene video with its ground truth) -> ``detector`` (the shipped model, or ``--model``) ->
``detection_recorder``. When the camera has sent its frames, the recorder writes the annotated
video, a contact sheet and the detections; the demo then scores them against the ground truth
(AP50 with pycocotools) and leaves in its output folder:

    annotated.mp4, contact_sheet.png, top_down.png, recording.json (per frame), summary.json, logs/<process>.log

The detector tracks the objects (their track ids are drawn on the video) and, with the synthetic
camera's aligned depth, places them in 3D: top_down.png shows their paths seen from above.

With the synthetic camera, DDS stays on this machine (the loopback Fast DDS profile) in a domain
of the demo's own. On a real camera topic the detector and recorder join the ROS environment as
it is (its ROS_DOMAIN_ID and DDS settings) to hear that camera; there is no ground truth then.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from detr_ros.coco_metrics import coco_evaluate, coco_results, ground_truth_from_dict
from detr_ros.errors import ConfigError, DetrRosError, ModelFileError
from detr_ros.package_files import package_file_candidates
from detr_ros.ros import shared_memory
from detr_ros.ros.loopback_dds import PROFILE, keep_dds_on_loopback, loopback_profile

DEFAULT_SECONDS = 20.0
CAMERA_RATE_HZ = 5.0
CAMERA_WIDTH, CAMERA_HEIGHT = 640, 480
# SceneVideo seed of the demo's video (the training data are still images from other generators).
CAMERA_SEED = 2024
# Process start-up (imports, model load, DDS discovery) allowed on top of the recording time.
STARTUP_ALLOWANCE_S = 90.0
STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 15
# Domain ids the demo picks from: clear of 0 and of the test suite's 101..200 (Fast DDS allows up to 232).
DEMO_DOMAINS = range(201, 231)
OUTPUT_NAMES = ("annotated.mp4", "contact_sheet.png", "top_down.png", "recording.json", "summary.json")
# The synthetic camera's depth, as RGB-D cameras publish it.
DEPTH_ENCODING = "16UC1"


def _die_with_parent():
    """Child processes get SIGTERM if the demo itself is killed (Linux), so no node is left behind."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class NodeProcess:
    """One node run as its own process, its parameters in a YAML file and its output in ``log_path``."""

    def __init__(self, name, module, parameters, log_path):
        self.name = name
        self.log_path = log_path
        parameters_path = log_path.with_suffix(".params.yaml")
        parameters_path.write_text(yaml.safe_dump({"/**": {"ros__parameters": parameters}}))
        self.command = [sys.executable, "-m", module, "--ros-args", "--params-file", str(parameters_path)]
        self.process = None

    def start(self, env):
        with open(self.log_path, "wb") as log:
            log.write(f"$ {' '.join(self.command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=_die_with_parent)

    @property
    def returncode(self):
        return self.process.poll() if self.process is not None else None

    def stop(self):
        """SIGINT (the nodes' clean shutdown), then SIGKILL if it does not end in time, removing the
        shared-memory segment it leaves."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            shared_memory.kill(self.process)

    def failure(self, what):
        """A DetrRosError naming this process, ``what`` happened, and the end of its log."""
        lines = self.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        tail = "\n".join(f"    {line}" for line in lines)
        return DetrRosError(f"the {self.name} process {what}; last lines of {self.log_path}:\n{tail}")


def _environment(camera_topic):
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    if camera_topic is None:
        profile = loopback_profile()
        if not profile.is_file():
            raise ConfigError(f"the loopback Fast DDS profile is missing; looked in "
                              f"{', '.join(map(str, package_file_candidates(PROFILE)))}")
        keep_dds_on_loopback(env, DEMO_DOMAINS[os.getpid() % len(DEMO_DOMAINS)], profile)
    return env


def _wait_for_subscribers(env, topics, processes, timeout_s):
    """Wait until each topic -> minimum subscriber count holds, watching the processes meanwhile."""
    import rclpy
    from rclpy.context import Context

    # This process's own participant must use the same DDS settings as the nodes.
    keep_dds_on_loopback(os.environ, int(env["ROS_DOMAIN_ID"]))
    context = Context()
    context.init(domain_id=int(env["ROS_DOMAIN_ID"]))
    try:
        node = rclpy.create_node("detr_ros_demo", context=context)
        deadline = time.monotonic() + timeout_s
        while True:
            missing = {t: n for t, n in topics.items() if node.count_subscribers(t) < n}
            if not missing:
                return
            for process in processes:
                if process.returncode is not None:
                    raise process.failure(f"exited with code {process.returncode} while starting")
            if time.monotonic() > deadline:
                raise DetrRosError(f"after {timeout_s:g} s the nodes were still not subscribed to "
                                   f"{', '.join(missing)}; see the logs in {processes[0].log_path.parent}")
            time.sleep(0.2)
    finally:
        context.try_shutdown()


def run_demo(out, *, model=None, camera_topic=None, seconds=DEFAULT_SECONDS):
    """Run camera -> detector -> recorder for ``seconds`` and leave the outputs in ``out``.

    model: ONNX file for the detector (None: the shipped model); camera_topic: a real camera's image
    topic instead of the synthetic camera (no ground truth then). Prints what runs and the summary
    table; returns summary.json's content.
    """
    if seconds <= 0:
        raise ConfigError(f"--seconds {seconds:g}: expected a positive number of seconds")
    model = _model_path(model)
    out = Path(out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_NAMES:  # a stale file from an earlier run must not pass for this run's
        (out / name).unlink(missing_ok=True)
    synthetic = camera_topic is None
    env = _environment(camera_topic)
    image_topic = "/image" if synthetic else camera_topic
    frames = max(1, round(seconds * CAMERA_RATE_HZ))

    recorder_parameters = {"image_topic": image_topic, "output_dir": str(out.resolve()), "show_ids": True}
    if synthetic:
        recorder_parameters.update(ground_truth_topic="/ground_truth", max_frames=frames, qos_reliability="reliable")
    else:
        recorder_parameters.update(ground_truth_topic="", duration_s=seconds, start_timeout_s=30.0)
    recorder = NodeProcess("detection_recorder", "detr_ros.ros.recorder_node", recorder_parameters,
                           logs / "detection_recorder.log")
    detector_parameters = {"model_path": str(model.resolve()), "image_topics": [image_topic], "tracking": True}
    if synthetic:
        detector_parameters["depth_topics"] = ["/depth/image_raw"]
    detector = NodeProcess("detector", "detr_ros.ros.detector_node", detector_parameters, logs / "detector.log")
    processes = [recorder, detector]
    camera = None
    if synthetic:
        camera = NodeProcess("synthetic_camera", "detr_ros.ros.synthetic_camera",
                             {"width": CAMERA_WIDTH, "height": CAMERA_HEIGHT, "rate": CAMERA_RATE_HZ,
                              "seed": CAMERA_SEED, "frames": frames, "wait_for_subscribers": 2,
                              "depth": DEPTH_ENCODING},
                             logs / "synthetic_camera.log")
        processes.append(camera)

    print(f"detr-ros demo: {'synthetic_camera' if synthetic else image_topic} -> detector ({model}) -> "
          f"detection_recorder for {seconds:g} s; logs in {logs}", flush=True)
    previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.monotonic()
    try:
        recorder.start(env)
        detector.start(env)
        if synthetic:
            # The camera starts once the detector and recorder listen, so no frame goes unheard. The
            # camera's own discovery can lag this process's, so it also waits for both (image: 2).
            _wait_for_subscribers(env, {image_topic: 2, "/ground_truth": 1, "/detections": 1}, processes[:2],
                                  STARTUP_ALLOWANCE_S)
            camera.start(env)
        _wait_for_recorder(recorder, processes, seconds + STARTUP_ALLOWANCE_S)
    except KeyboardInterrupt:
        print(f"interrupted: stopping the nodes; their logs are in {logs}", file=sys.stderr)
        raise
    finally:
        for process in reversed(processes):
            process.stop()
        signal.signal(signal.SIGTERM, previous_sigterm)
    elapsed = time.monotonic() - started

    recording = json.loads((out / "recording.json").read_text())
    summary = summarise(recording, model, seconds, elapsed, synthetic)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(format_table(summary, out))
    if summary["frames_answered"] == 0:
        raise detector.failure("answered no frame")
    return summary


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through the cleanup like Ctrl-C does


def _model_path(model):
    if model is None:
        from detr_ros.ros.detector_parameters import default_model_path

        model = Path(default_model_path())
        if not model.is_file():
            raise ModelFileError(f"the shipped model {model} is missing; train and export it, or pass --model")
    elif not model.is_file():
        raise ModelFileError(f"--model {model}: no such file, expected an ONNX model")
    return model


def _wait_for_recorder(recorder, processes, timeout_s):
    """The recorder ends the run; any other process ending with an error fails it."""
    deadline = time.monotonic() + timeout_s
    while recorder.returncode is None:
        for process in processes:
            code = process.returncode
            # Only the synthetic camera ends by itself (after its frames) while the recorder runs.
            if process is not recorder and code is not None and (code != 0 or process.name != "synthetic_camera"):
                raise process.failure(f"ended early with exit code {code}")
        if time.monotonic() > deadline:
            raise recorder.failure(f"did not finish within {timeout_s:g} s")
        time.sleep(0.2)
    if recorder.returncode != 0:
        raise recorder.failure(f"failed with exit code {recorder.returncode}")


def average_precision_50(frames, num_classes):
    """COCO AP at IoU 0.5 (pycocotools) of the recorded detections against the ground truth.

    frames: recording.json frames that carry ground truth; boxes xyxy pixels, class ids are training indices.
    """
    images, annotations, results = [], [], []
    for image_id, frame in enumerate(frames, start=1):
        images.append({"id": image_id, "width": frame["width"], "height": frame["height"]})
        for truth in frame["ground_truth"]:
            x0, y0, x1, y1 = truth["box"]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": truth["class_id"],
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        found = frame["detections"]
        results += coco_results(image_id, [d["box"] for d in found], [d["score"] for d in found],
                                [d["class_id"] for d in found], range(num_classes))
    if not annotations:
        return None
    truth = ground_truth_from_dict({"images": images, "annotations": annotations,
                                    "categories": [{"id": i, "name": str(i)} for i in range(num_classes)]})
    return coco_evaluate(truth, results)["AP50"]


def summarise(recording, model, seconds, elapsed_s, synthetic):
    """summary.json: the recorder's counts and latency, plus AP50 when there is ground truth."""
    from detr_ros.synthetic import CLASS_NAMES

    summary = {key: recording[key] for key in ("frames_in", "frames_answered", "dropped", "answered_hz", "latency_ms")}
    summary.update(model=str(model), camera="synthetic_camera" if synthetic else recording["image_topic"],
                   seconds=seconds, wall_time_s=round(elapsed_s, 1), ap50=None, ap50_note=None,
                   outputs=recording["outputs"])
    scored = [f for f in recording["frames"] if f["ground_truth"] is not None]
    if not synthetic:
        summary["ap50_note"] = "no ground truth for a real camera"
    elif tuple(recording["class_names"]) != CLASS_NAMES:
        summary["ap50_note"] = (f"the model's classes {recording['class_names']} are not the synthetic scenes' "
                                f"{list(CLASS_NAMES)}")
    elif not scored:
        summary["ap50_note"] = "no answered frame had its ground truth"
    else:
        summary["ap50"] = round(average_precision_50(scored, len(CLASS_NAMES)), 4)
        summary["ap50_note"] = f"COCO AP at IoU 0.5 over the {len(scored)} answered frames"
    return summary


def format_table(summary, out):
    latency = summary["latency_ms"]
    ap50 = f"{summary['ap50']:.3f}" if summary["ap50"] is not None else f"n/a ({summary['ap50_note']})"

    def milliseconds(value):
        return "n/a" if value is None else f"{value:.1f} ms"

    rows = [
        ("frames in", str(summary["frames_in"])),
        ("frames answered", str(summary["frames_answered"])),
        ("dropped", str(summary["dropped"])),
        ("latency p50", milliseconds(latency["p50"])),
        ("latency p99", milliseconds(latency["p99"])),
        ("AP50 vs ground truth", ap50),
    ]
    written = summary["outputs"]
    paths = [("video", out / "annotated.mp4" if "video" in written else None),
             ("contact sheet", out / "contact_sheet.png" if "contact_sheet" in written else None),
             ("3D, top view", out / "top_down.png" if "top_down" in written else None),
             ("summary", out / "summary.json"), ("logs", out / "logs")]
    width = max(len(name) for name, _ in rows + paths)
    lines = [f"  {name:<{width}}  {value}" for name, value in rows]
    lines.append(f"  (latency: {latency['measured']})")
    lines += [f"  {name:<{width}}  {value}" for name, value in paths if value]
    return "\n".join(lines)
