"""The detector node's parameters: one table of ParameterSpec rows gives each its default, description,
limits and whether it can change at runtime; plain functions check values and map camera topics.

Everything here works without a ROS context, so the checks are tested directly and the
launch file and config/detector.yaml are compared against the same table.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from detr_ros.errors import ConfigError
from detr_ros.package_files import package_file, package_file_candidates
from detr_ros.ros.messages import CLASS_ID_FORMATS
from detr_ros.ros.parameters import STRING_ARRAY, ParameterSpec
from detr_ros.runtime.detections import DEFAULT_DUPLICATE_IOU, DEFAULT_SCORE_THRESHOLD
from detr_ros.runtime.detector import THREAD_SPINNING
from detr_ros.runtime.encoded_images import DEFAULT_MAX_PIXELS
from detr_ros.runtime.formats import FORMATS
from detr_ros.runtime.metadata import RESIZE_MODES
from detr_ros.runtime.preprocess import NORMALIZATIONS

NODE_NAME = "detr_detector"
SHIPPED_MODEL = Path("models") / "synthetic_rtdetr.onnx"
PROVIDERS = ("tensorrt", "cuda", "cpu")
RELIABILITIES = ("best_effort", "reliable")
INT8_MODES = ("auto", "true", "false")


def default_model_path():
    """The shipped model: in the ament share folder, the pip install prefix, or the source tree."""
    return str(package_file(SHIPPED_MODEL) or package_file_candidates(SHIPPED_MODEL)[0])


PARAMETERS = (
    ParameterSpec("model_path", "", "ONNX model file (detr_ros export, official RT-DETR or Ultralytics RT-DETR); "
                  "empty: the shipped synthetic-scenes model"),
    ParameterSpec("labels_path", "", "class names, one per line, overriding those in the model file; empty: none"),
    ParameterSpec("model_format", "", "the model file's format, for a file whose shapes and metadata do not decide "
                  "it (the start-up error lists the candidates); empty: recognised from the file",
                  choices=("", *FORMATS)),
    ParameterSpec("resize_mode", "", "how images are fitted to the network input: stretch or letterbox; empty: as "
                  "the file's metadata or its format says", choices=("", *RESIZE_MODES)),
    ParameterSpec("normalization", "", "applied after scaling pixels to 0..1: none, or imagenet (ImageNet mean/std "
                  "per channel, as RF-DETR and DEIMv2 S to X expect); empty: as the format says",
                  choices=("", *NORMALIZATIONS)),
    ParameterSpec("providers", list(PROVIDERS), "execution providers in order of preference; the first one "
                  "available in this onnxruntime build is used", choices=PROVIDERS),
    ParameterSpec("device_id", 0, "GPU index for the TensorRT and CUDA providers", low=0, high=64),
    ParameterSpec("threads", 0, "CPU inference threads; 0: onnxruntime's default (one per physical core)",
                  low=0, high=256),
    ParameterSpec("thread_spinning", "never", "how idle CPU inference threads wait for work: never (sleep: least "
                  "CPU, and robust when other processes load the cores), while_running (busy-wait while a frame "
                  "is inferred: faster on cores left free for the node, much slower on busy ones) or always "
                  "(busy-wait between frames too, burning a core)", choices=THREAD_SPINNING),
    ParameterSpec("cpu_int8", True, "on the CPU, run MODEL.int8.onnx found beside MODEL.onnx when it suits this "
                  "CPU; false: always the named file"),
    ParameterSpec("tensorrt.fp16", True, "TensorRT: allow FP16 kernels"),
    ParameterSpec("tensorrt.int8", "auto", "TensorRT INT8: auto (when the model carries its calibration), "
                  "true or false", choices=INT8_MODES),
    ParameterSpec("tensorrt.int8_calibration_table", "", "TensorRT: calibration table for INT8 without QDQ nodes"),
    ParameterSpec("tensorrt.engine_cache", True, "TensorRT: keep built engines, keyed on model, TensorRT and GPU"),
    ParameterSpec("tensorrt.timing_cache", True, "TensorRT: keep the kernel timing cache"),
    ParameterSpec("tensorrt.cache_dir", "", "TensorRT cache folder; empty: $DETR_ROS_CACHE or ~/.cache/detr_ros"),
    ParameterSpec("tensorrt.workspace_mb", 2048, "TensorRT builder workspace in MiB", low=64, high=65536),
    ParameterSpec("tensorrt.builder_optimization_level", 3, "TensorRT builder optimisation level", low=0, high=5),
    ParameterSpec("score_threshold", DEFAULT_SCORE_THRESHOLD, "minimum score of a published detection",
                  read_only=False, low=0.0, high=1.0),
    ParameterSpec("duplicate_iou", DEFAULT_DUPLICATE_IOU, "of two same-class detections overlapping more than "
                  "this (IoU), only the better one is published; 1.0 publishes both", read_only=False,
                  low=0.0, high=1.0),
    ParameterSpec("classes", STRING_ARRAY, "class names (or indices) to publish; unset or empty: all classes",
                  read_only=False),
    ParameterSpec("max_detections", 100, "most detections published per frame, best first", read_only=False,
                  low=1, high=1000),
    ParameterSpec("image_topics", ["image"], "input image topics, one per camera; a camera <ns>/<name> publishes "
                  "<ns>/detections, <ns>/label_info and <ns>/debug_image; a topic ending in /compressed is read "
                  "as sensor_msgs/CompressedImage"),
    ParameterSpec("compressed", False, "read every camera as sensor_msgs/CompressedImage on <topic>/compressed "
                  "(the image_transport convention)"),
    ParameterSpec("qos_reliability", "best_effort", "input subscription reliability", choices=RELIABILITIES),
    ParameterSpec("qos_depth", 1, "input subscription queue depth; 1 keeps only the newest frame", low=1, high=1000),
    ParameterSpec("max_image_pixels", DEFAULT_MAX_PIXELS, "largest input image in pixels (width x height); a larger "
                  "one is rejected, a compressed one from its header before it is decoded", low=1, high=1 << 32),
    ParameterSpec("publish_debug_image", True, "publish debug_image (advertised only while true, drawn only while "
                  "someone subscribes)",
                  read_only=False),
    ParameterSpec("class_id_format", "index", "ObjectHypothesis.class_id as the class index or the class name",
                  read_only=False, choices=CLASS_ID_FORMATS),
    ParameterSpec("frame_id", "", "frame_id for the outputs; empty: the source image's frame_id", read_only=False),
    ParameterSpec("tracking", False, "track objects per camera: Detection2D.id carries a track id, stable while the "
                  "object is tracked and never reused; empty where a detection continues or starts no track"),
    ParameterSpec("tracking_low_score", 0.2, "tracking: weakest detection that may continue a track (also "
                  "published then)", low=0.0, high=1.0),
    ParameterSpec("tracking_lost_timeout_s", 1.0, "tracking: how long a track survives without a detection "
                  "above the threshold", low=0.01, high=3600.0),
    ParameterSpec("tracking_reset_gap_s", 5.0, "tracking: frames further apart than this, or stamps going "
                  "backwards (a replayed bag), drop every track", low=0.01, high=3600.0),
    ParameterSpec("depth_topics", STRING_ARRAY, "aligned depth images (16UC1 mm or 32FC1 m), one per camera in "
                  "image_topics order ('' for none), each with camera_info beside it; a camera with depth also "
                  "publishes <ns>/detections_3d and <ns>/markers; unset or empty: no 3D", per_camera=True),
    ParameterSpec("depth_tolerance_s", 0.02, "largest stamp difference between a colour frame and its depth frame",
                  low=0.0, high=1.0),
    ParameterSpec("depth_wait_s", 0.1, "how long a frame's detections wait for its depth frame, for 3D, after "
                  "its 2D detections are out (nothing else waits meanwhile)", low=0.0, high=10.0),
)
SPECS = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class CameraTopics:
    """Topics of one camera. ``image`` is what the node subscribes to."""

    image: str
    compressed: bool
    detections: str
    label_info: str
    debug_image: str


def camera_topics(image_topic, compressed):
    """Map an input topic to its camera's topics: ``<ns>/<name>`` -> ``<ns>/detections`` etc.

    A topic ending in ``/compressed`` is a compressed camera whatever ``compressed`` says; with
    ``compressed`` true, ``<ns>/<name>`` is read from ``<ns>/<name>/compressed``.
    """
    base = image_topic.rstrip("/")
    if base.endswith("/compressed"):
        base, compressed = base[: -len("/compressed")], True
    if not base or base.endswith(("/", "~")):
        raise ConfigError(f"image_topics: {image_topic!r} is not an image topic name, expected e.g. 'camera/image_raw'")
    prefix = base[: base.rfind("/") + 1]
    return CameraTopics(
        image=f"{base}/compressed" if compressed else base,
        compressed=compressed,
        detections=f"{prefix}detections",
        label_info=f"{prefix}label_info",
        debug_image=f"{prefix}debug_image",
    )


def cameras_from(image_topics, compressed):
    """CameraTopics for each topic; two cameras whose outputs would collide are refused."""
    if not image_topics:
        raise ConfigError("image_topics: empty, expected at least one image topic")
    cameras = [camera_topics(topic, compressed) for topic in image_topics]
    seen = {}
    for topic, camera in zip(image_topics, cameras):
        if camera.detections in seen:
            raise ConfigError(
                f"image_topics: {seen[camera.detections]!r} and {topic!r} would both publish {camera.detections}; "
                "expected each camera in its own namespace"
            )
        seen[camera.detections] = topic
    return cameras


def class_ids_from(classes, class_names):
    """Allow-list of class indices from names or index strings; None (all classes) when empty."""
    if not classes:
        return None
    ids = []
    for entry in classes:
        if entry in class_names:
            ids.append(class_names.index(entry))
        elif entry.isdigit() and int(entry) < len(class_names):
            ids.append(int(entry))
        else:
            raise ConfigError(
                f"classes: {entry!r} is not a class of this model, expected names from {list(class_names)} "
                f"or indices 0..{len(class_names) - 1}"
            )
    return ids


def tensorrt_options(values):
    """The runtime's tensorrt_options dict from the ``tensorrt.*`` parameter values (name -> value)."""
    return {
        "fp16": values["tensorrt.fp16"],
        "int8": {"auto": "auto", "true": True, "false": False}[values["tensorrt.int8"]],
        "int8_calibration_table": values["tensorrt.int8_calibration_table"],
        "engine_cache": values["tensorrt.engine_cache"],
        "timing_cache": values["tensorrt.timing_cache"],
        "cache_dir": os.path.expanduser(values["tensorrt.cache_dir"]),
        "workspace_bytes": values["tensorrt.workspace_mb"] << 20,
        "builder_optimization_level": values["tensorrt.builder_optimization_level"],
    }
