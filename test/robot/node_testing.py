"""Helpers for the node tests: run the node executables in their own processes and talk to them over DDS."""

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import QoSProfile, ReliabilityPolicy
from scipy.optimize import linear_sum_assignment
from vision_msgs.msg import Detection2DArray

from detr_ros.ros import shared_memory
from detr_ros.ros.messages import stamp_ns
from detr_ros.runtime.detections import iou_matrix
from ros_testing import spin_until

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MODEL = REPO_ROOT / "models" / "synthetic_rtdetr.onnx"


class NodeProcess:
    """A node executable (``python -m module``) with parameters from a YAML file; output collected."""

    def __init__(self, module, ros_env, tmp_path, parameters=None, arguments=()):
        params_file = Path(tmp_path) / f"{module.rsplit('.', 1)[-1]}_{time.monotonic_ns()}.yaml"
        params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": dict(parameters or {})}}))
        command = [sys.executable, "-m", module, "--ros-args", "--params-file", str(params_file), *arguments]
        self.process = subprocess.Popen(command, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self):
        return "".join(self.lines)

    def wait_for_output(self, text, timeout_s):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output:
                return True
            if self.process.poll() is not None:
                self._reader.join(timeout=2)
                return text in self.output
            time.sleep(0.05)
        return False

    def wait(self, timeout_s):
        """Exit code once the process ends by itself."""
        code = self.process.wait(timeout=timeout_s)
        self._reader.join(timeout=2)
        return code

    def stop(self, timeout_s=15):
        """Ctrl-C, as an operator would; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                shared_memory.kill(self.process)
        self._reader.join(timeout=2)
        return self.process.returncode


def start_detector(ros_env, tmp_path, parameters, arguments=(), ready_timeout_s=60):
    """Start the detector executable and wait until it listens; the caller stops it."""
    node = NodeProcess("detr_ros.ros.detector_node", ros_env, tmp_path,
                       {"model_path": str(SHIPPED_MODEL), "providers": ["cpu"], **parameters}, arguments)
    if not node.wait_for_output("listening to", ready_timeout_s):
        node.stop()
        raise AssertionError(f"detector did not start:\n{node.output}")
    return node


def detections_by_stamp(probe, topic, message_type=Detection2DArray):
    """A dict that fills, as ``probe`` spins, with the messages (Detection2DArray, or ``message_type``) of
    ``topic`` by source stamp."""
    found = {}
    probe.create_subscription(message_type, topic, lambda m: found.setdefault(stamp_ns(m.header), m),
                              QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    return found


def boxes_of(detection_array):
    """(xyxy [n, 4], class_id strings [n], scores [n]) of a Detection2DArray."""
    boxes, classes, scores = [], [], []
    for detection in detection_array.detections:
        cx, cy = detection.bbox.center.position.x, detection.bbox.center.position.y
        w, h = detection.bbox.size_x, detection.bbox.size_y
        boxes.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        classes.append(detection.results[0].hypothesis.class_id)
        scores.append(detection.results[0].hypothesis.score)
    return np.array(boxes, np.float64).reshape(-1, 4), classes, np.array(scores)


def matched_ious(truth, found):
    """One-to-one matching of same-class boxes; IoU of each truth box with its match (0 when none).

    truth, found: (boxes [n, 4], class ids [n]) pairs.
    """
    truth_boxes, truth_classes = truth
    found_boxes, found_classes = found
    result = np.zeros(len(truth_boxes))
    if len(truth_boxes) == 0 or len(found_boxes) == 0:
        return result
    same_class = np.array([[t == f for f in found_classes] for t in truth_classes])
    ious = iou_matrix(truth_boxes, found_boxes) * same_class
    rows, cols = linear_sum_assignment(-ious)
    result[rows] = ious[rows, cols]
    return result


def set_parameters(context, probe, node_name, values, timeout_s=10.0):
    """Call <node>/set_parameters with {name: value}; returns the list of SetParametersResult."""
    client = probe.create_client(SetParameters, f"{node_name}/set_parameters")
    try:
        assert spin_until(context, [probe], client.service_is_ready, timeout_s), "no set_parameters service"
        request = SetParameters.Request(parameters=[ParameterMsg(name=k, value=_parameter_value(v))
                                                    for k, v in values.items()])
        future = client.call_async(request)
        assert spin_until(context, [probe], future.done, timeout_s), "set_parameters timed out"
        return future.result().results
    finally:
        probe.destroy_client(client)


def _parameter_value(value):
    if isinstance(value, ParameterValue):  # as given, e.g. the bool array `ros2 param set` sends for "[]"
        return value
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    if isinstance(value, str):
        return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    return ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=list(value))


def play_synthetic_camera(ros_env, ros_context, tmp_path, probe, parameters, answered, timeout_s, namespace="/cam"):
    """Run the synthetic camera in ``namespace`` with ``parameters`` (give it ``frames``) while spinning
    ``probe``, until it has ended and ``answered()`` holds (or ``timeout_s``); asserts it ended cleanly."""
    camera = NodeProcess("detr_ros.ros.synthetic_camera", ros_env, tmp_path, parameters, ["-r", f"__ns:={namespace}"])
    try:
        spin_until(ros_context, [probe], lambda: camera.process.poll() is not None and answered(), timeout_s)
        assert camera.wait(10) == 0, camera.output
    finally:
        camera.stop()
