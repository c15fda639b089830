"""The launch files' arguments: each commonly set parameter has one, with a description; the strings a
user types become the values the node accepts, and mistakes stop the launch naming the argument.
`launch` is not installable here, so the launch files are read as Python and their logic
(detr_ros/ros/launch_arguments.py) is called directly; the node then runs on what it produced."""

import ast

import pytest
import yaml

from detr_ros.errors import ConfigError
from detr_ros.ros.detector_parameters import NODE_NAME, SPECS
from detr_ros.ros.launch_arguments import DEMO_ARGUMENTS, DETECTOR_ARGUMENTS, demo_launch, detector_launch
from node_testing import REPO_ROOT, start_detector

CONFIG = REPO_ROOT / "config" / "detector.yaml"


def test_every_commonly_set_parameter_has_a_described_launch_argument():
    names = {argument.name for argument in DETECTOR_ARGUMENTS}
    assert {"model", "image_topics", "score_threshold", "classes", "qos_reliability", "namespace", "node_name",
            "use_sim_time", "log_level", "params_file", "respawn", "tracking", "depth_topics"} <= names
    # Every tracking and 3D parameter, as the other parameters, can be set at launch.
    assert {name for name in SPECS if name.startswith(("tracking", "depth_"))} <= names
    assert all(len(argument.description) > 20 for argument in DETECTOR_ARGUMENTS + DEMO_ARGUMENTS)
    assert {a.parameter for a in DETECTOR_ARGUMENTS if a.parameter} <= set(SPECS) | {"use_sim_time"}


@pytest.mark.parametrize("path, table, function", [("launch/detector.launch.py", "DETECTOR_ARGUMENTS", "detector_launch"),
                                                   ("launch/demo.launch.py", "DEMO_ARGUMENTS", "demo_launch")])
def test_launch_files_declare_the_table_and_call_its_function(path, table, function):
    tree = ast.parse((REPO_ROOT / path).read_text())
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert {table, function, "DeclareLaunchArgument", "generate_launch_description"} <= names


def test_empty_arguments_keep_the_params_file_and_name_the_node_detr_detector():
    node = detector_launch({})
    params_file, overrides = node.parameters
    assert yaml.safe_load(open(params_file)) == yaml.safe_load(CONFIG.read_text())
    assert overrides == {"use_sim_time": False}
    assert (node.executable, node.name, node.namespace, node.respawn) == ("detector", NODE_NAME, "", False)
    assert NODE_NAME == "detr_detector" and f"/{NODE_NAME} " in CONFIG.read_text()
    assert node.arguments == ["--ros-args", "--log-level", "info"]


@pytest.mark.parametrize("text, topics", [
    ("/camera/image_raw", ["/camera/image_raw"]),
    ("[/front/image_raw, /rear/image_raw]", ["/front/image_raw", "/rear/image_raw"]),
    ("['cam/image/compressed']", ["cam/image/compressed"]),
])
def test_image_topics_as_a_list_or_a_single_topic(text, topics):
    assert detector_launch({"image_topics": text}).parameters[1]["image_topics"] == topics


def test_given_arguments_become_checked_parameter_values():
    node = detector_launch({"params_file": str(CONFIG), "model": "/m/model.onnx", "score_threshold": "1",
                            "classes": "ring", "qos_reliability": "reliable", "publish_debug_image": "false",
                            "use_sim_time": "true", "namespace": "front", "node_name": "front_detector",
                            "log_level": "debug", "respawn": "true"})
    assert node.parameters == [str(CONFIG), {
        "model_path": "/m/model.onnx", "score_threshold": 1.0, "classes": ["ring"], "qos_reliability": "reliable",
        "publish_debug_image": False, "use_sim_time": True}]
    assert (node.name, node.namespace, node.respawn) == ("front_detector", "front", True)
    assert node.arguments[-1] == "debug"


def test_tracking_and_depth_arguments_become_checked_parameter_values():
    node = detector_launch({"image_topics": "[/front/image_raw, /rear/image_raw]", "tracking": "true",
                            "tracking_low_score": "0.3", "tracking_lost_timeout_s": "2", "tracking_reset_gap_s": "10",
                            "depth_topics": "[/front/depth/image_raw, '']", "depth_tolerance_s": "0.05",
                            "depth_wait_s": "0"})
    overrides = node.parameters[1]
    assert {name: overrides[name] for name in overrides if name.startswith(("tracking", "depth_"))} == {
        "tracking": True, "tracking_low_score": 0.3, "tracking_lost_timeout_s": 2.0, "tracking_reset_gap_s": 10.0,
        "depth_topics": ["/front/depth/image_raw", ""], "depth_tolerance_s": 0.05, "depth_wait_s": 0.0}
    assert detector_launch({"depth_topics": "/camera/depth/image_raw"}).parameters[1]["depth_topics"] == [
        "/camera/depth/image_raw"]


@pytest.mark.parametrize("given, reason", [
    ({"params_file": "/nonexistent/detector.yaml"}, "params_file: /nonexistent/detector.yaml does not exist"),
    ({"image_topics": "[]"}, "image_topics: empty, expected at least one image topic"),
    ({"image_topics": "[a/image, a/other]"}, "own namespace"),
    ({"score_threshold": "high"}, "score_threshold: got 'high', expected a number in [0.0, 1.0]"),
    ({"score_threshold": "1.5"}, "score_threshold: got 1.5"),
    ({"qos_reliability": "sometimes"}, "expected one of best_effort, reliable"),
    ({"classes": "[1, 2]"}, "classes: got [1, 2], expected a list of strings"),
    ({"publish_debug_image": "maybe"}, "publish_debug_image: got 'maybe', expected true or false"),
    ({"use_sim_time": "yes please"}, "use_sim_time:='yes please', expected true or false"),
    ({"log_level": "loud"}, "log_level:='loud', expected one of debug"),
    ({"respawn": "always"}, "respawn:='always', expected true or false"),
    ({"node_name": ""}, "node_name is empty"),
    ({"tracking": "sometimes"}, "tracking: got 'sometimes', expected true or false"),
    ({"tracking_low_score": "2"}, "tracking_low_score: got 2"),
    ({"tracking_lost_timeout_s": "0"}, "tracking_lost_timeout_s: got 0"),
    ({"depth_topics": "[1, 2]"}, "depth_topics: got [1, 2], expected a list of strings"),
    ({"depth_wait_s": "long"}, "depth_wait_s: got 'long'"),
])
def test_mistakes_stop_the_launch_naming_the_argument(given, reason):
    with pytest.raises(ConfigError, match="launch argument") as raised:
        detector_launch(given)
    assert reason in str(raised.value)


def test_the_node_runs_on_what_the_launch_logic_gives_it(ros_env, tmp_path):
    """As launch_ros would: the params file, then the overrides; "[]" for classes means every class, for
    depth_topics no depth."""
    node = detector_launch({"classes": "[]", "score_threshold": "1", "image_topics": "/launch/image_raw",
                            "node_name": "launched_detector", "log_level": "debug", "tracking": "true",
                            "depth_topics": "[]"})
    params_file, overrides = node.parameters
    overrides_file = tmp_path / "overrides.yaml"
    overrides_file.write_text(yaml.safe_dump({node.name: {"ros__parameters": overrides}}))
    detector = start_detector(ros_env, tmp_path, {}, arguments=[
        "--params-file", params_file, "--params-file", str(overrides_file), "-p", "providers:=[cpu]",
        "-r", f"__node:={node.name}", *node.arguments[1:]])
    try:
        assert "listening to /launch/image_raw" in detector.output
        assert "[DEBUG]" in detector.output
    finally:
        assert detector.stop() == 0, detector.output


def test_demo_launch_starts_camera_detector_and_recorder_on_one_topic():
    camera, detector, recorder = demo_launch({"frames": "50", "output_dir": "/tmp/demo"})
    assert [n.executable for n in (camera, detector, recorder)] == ["synthetic_camera", "detector", "detection_recorder"]
    assert camera.parameters == [{"frames": 50, "rate": 10.0, "wait_for_subscribers": 2}]
    assert detector.parameters[1]["image_topics"] == ["image"]
    assert recorder.parameters == [{"output_dir": "/tmp/demo", "image_topic": "image"}]
    with pytest.raises(ConfigError, match="frames: got 'many'"):
        demo_launch({"frames": "many"})
