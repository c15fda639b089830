"""The launch files' arguments and what they become, as plain functions that tests call without `launch`.

``launch/detector.launch.py`` declares every row of ``DETECTOR_ARGUMENTS`` and hands the given
strings to ``detector_launch``, which checks them as the node would (the same ParameterSpec rows)
and returns what to start. A mistake (a params file that does not exist, ``image_topics:="[]"``,
``score_threshold:=high``) stops the launch with one line naming the argument, before any process
starts.
"""

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from detr_ros.errors import ConfigError
from detr_ros.package_files import package_file, package_file_candidates
from detr_ros.ros import synthetic_camera
from detr_ros.ros.detector_parameters import NODE_NAME, SPECS, cameras_from

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
DEFAULT_PARAMS_FILE = Path("config") / "detector.yaml"
BOOLEANS = ("true", "false")


@dataclass(frozen=True)
class LaunchArgument:
    """One launch argument. parameter: the node parameter it sets when given (empty: keep the params file's)."""

    name: str
    default: str
    description: str
    parameter: str = ""


DETECTOR_ARGUMENTS = (
    LaunchArgument("params_file", "", "parameters file (see config/detector.yaml, the default); it must exist"),
    LaunchArgument("model", "", "ONNX model file; empty: as in params_file (default: the shipped model)", "model_path"),
    LaunchArgument("image_topics", "", "input image topics, one per camera: a YAML list "
                   "(\"[/front/image_raw, /rear/image_raw]\") or a single topic; empty: as in params_file",
                   "image_topics"),
    LaunchArgument("compressed", "", "true: read sensor_msgs/CompressedImage on <topic>/compressed; empty: as in "
                   "params_file", "compressed"),
    LaunchArgument("score_threshold", "", "minimum score of a published detection, 0..1; empty: as in params_file",
                   "score_threshold"),
    LaunchArgument("classes", "", "class names (or indices) to publish, a YAML list or one name; \"[]\": all; "
                   "empty: as in params_file", "classes"),
    LaunchArgument("qos_reliability", "", "input QoS reliability: best_effort or reliable; empty: as in params_file",
                   "qos_reliability"),
    LaunchArgument("publish_debug_image", "", "true or false; empty: as in params_file", "publish_debug_image"),
    LaunchArgument("tracking", "", "true: Detection2D.id carries a track id per camera; empty: as in params_file",
                   "tracking"),
    LaunchArgument("tracking_low_score", "", "weakest detection that may continue a track, 0..1; empty: as in "
                   "params_file", "tracking_low_score"),
    LaunchArgument("tracking_lost_timeout_s", "", "seconds a track survives without a detection above the "
                   "threshold; empty: as in params_file", "tracking_lost_timeout_s"),
    LaunchArgument("tracking_reset_gap_s", "", "a pause between frames longer than this (seconds) drops every track; "
                   "empty: as in params_file", "tracking_reset_gap_s"),
    LaunchArgument("depth_topics", "", "aligned depth image topics, one per camera in image_topics order ('' for "
                   "none), a YAML list or a single topic; \"[]\": none; empty: as in params_file", "depth_topics"),
    LaunchArgument("depth_tolerance_s", "", "largest stamp difference between a colour frame and its depth frame "
                   "(seconds); empty: as in params_file", "depth_tolerance_s"),
    LaunchArgument("depth_wait_s", "", "how long a frame's detections wait for its depth frame, for 3D "
                   "(seconds); empty: as in params_file", "depth_wait_s"),
    LaunchArgument("use_sim_time", "false", "true: stamp diagnostics and label_info with /clock", "use_sim_time"),
    LaunchArgument("namespace", "", "namespace of the node and its topics"),
    LaunchArgument("node_name", NODE_NAME, "name of the node, which `ros2 param` and `ros2 node` use"),
    LaunchArgument("log_level", "info", f"log level: {', '.join(LOG_LEVELS)}"),
    LaunchArgument("respawn", "false", "true: start the node again when it exits"),
)


@dataclass(frozen=True)
class NodeLaunch:
    """What to start: a detr_ros executable and launch_ros.actions.Node's arguments for it."""

    executable: str
    name: str
    namespace: str
    parameters: list  # params file paths and dicts of values, later ones overriding
    arguments: list = field(default_factory=list)
    respawn: bool = False

    def node_arguments(self):
        """Keyword arguments of launch_ros.actions.Node."""
        return dict(package="detr_ros", executable=self.executable, name=self.name, namespace=self.namespace,
                    parameters=self.parameters, arguments=self.arguments, respawn=self.respawn, output="screen",
                    emulate_tty=True)


def _boolean(argument, text):
    if text.lower() not in BOOLEANS:
        raise ConfigError(f"launch argument {argument}:={text!r}, expected true or false")
    return text.lower() == "true"


def _parameter_value(argument, text, specs=SPECS):
    """The node parameter value of a launch argument's text, checked as the node (``specs``) checks it."""
    spec = specs.get(argument.parameter)
    if spec is None:  # use_sim_time: rclpy's own
        return _boolean(argument.name, text)
    if isinstance(spec.default, str) and not spec.is_list:
        value = text  # a path or a name, taken as written
    else:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"launch argument {argument.name}:={text!r} is not valid YAML") from None
        if spec.is_list and isinstance(value, str):
            value = [value]  # a single topic or class without brackets
    problem = spec.problem(value)
    if problem:
        raise ConfigError(f"launch argument {argument.name}: {problem}")
    return spec.normalized(value)


def detector_launch(given):
    """NodeLaunch of the detector from launch argument strings (name -> text, as performed).

    An empty params_file is the installed config/detector.yaml. Raises ConfigError naming the
    argument for any value the node would refuse.
    """
    values = {argument.name: given.get(argument.name, argument.default) for argument in DETECTOR_ARGUMENTS}
    params_file = values["params_file"] or str(package_file(DEFAULT_PARAMS_FILE)
                                                or package_file_candidates(DEFAULT_PARAMS_FILE)[0])
    if not os.path.isfile(params_file):
        raise ConfigError(f"launch argument params_file: {params_file} does not exist, expected a parameters file "
                          "like config/detector.yaml")
    overrides = {argument.parameter: _parameter_value(argument, values[argument.name])
                 for argument in DETECTOR_ARGUMENTS if argument.parameter and values[argument.name]}
    if "image_topics" in overrides:
        try:
            cameras_from(overrides["image_topics"], overrides.get("compressed", False))
        except ConfigError as error:
            raise ConfigError(f"launch argument {error}") from None
    for name in ("classes", "depth_topics"):
        if overrides.get(name) == []:
            # launch_ros cannot give the node the type of an empty list; a blank entry means the same
            # (every class; no depth for the camera).
            overrides[name] = [""]
    if values["log_level"] not in LOG_LEVELS:
        raise ConfigError(f"launch argument log_level:={values['log_level']!r}, expected one of {', '.join(LOG_LEVELS)}")
    if not values["node_name"]:
        raise ConfigError("launch argument node_name is empty, expected a node name such as detr_detector")
    return NodeLaunch(
        executable="detector",
        name=values["node_name"],
        namespace=values["namespace"],
        parameters=[params_file, overrides],
        arguments=["--ros-args", "--log-level", values["log_level"]],
        respawn=_boolean("respawn", values["respawn"]),
    )


DEMO_ARGUMENTS = (
    LaunchArgument("model", "", "ONNX model file for the detector; empty: the shipped model"),
    LaunchArgument("output_dir", "recording", "folder for the recorder's annotated.mp4, contact_sheet.png and "
                   "recording.json"),
    LaunchArgument("frames", "300", "frames the synthetic camera publishes before the demo ends; 0: until stopped"),
    LaunchArgument("rate", "10.0", "synthetic camera frames per second"),
    LaunchArgument("namespace", "", "namespace of the three nodes and their topics"),
)


def demo_launch(given):
    """[NodeLaunch] of the demo pipeline: synthetic camera -> detector -> recorder.

    The camera starts once the detector and the recorder subscribe, so that no frame is lost."""
    values = {argument.name: given.get(argument.name, argument.default) for argument in DEMO_ARGUMENTS}
    namespace = values["namespace"]
    detector = detector_launch({"model": values["model"], "namespace": namespace, "image_topics": "image"})
    camera_specs = {spec.name: spec for spec in synthetic_camera.PARAMETERS}
    camera_values = {name: _parameter_value(LaunchArgument(name, "", "", name), values[name], camera_specs)
                     for name in ("frames", "rate")}
    camera = NodeLaunch("synthetic_camera", "synthetic_camera", namespace,
                        [{**camera_values, "wait_for_subscribers": 2}])
    recorder = NodeLaunch("detection_recorder", "detection_recorder", namespace,
                          [{"output_dir": values["output_dir"], "image_topic": "image"}])
    return [camera, detector, recorder]
