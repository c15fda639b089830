"""ROS messages built from plain arrays: detections, label info, diagnostics, images.

Message classes need no running ROS context, so tests call these directly.
"""

import array
import math

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import LabelInfo, VisionClass

from detr_ros.ros.image_conversion import encode_compressed, encode_image

# ObjectHypothesis.class_id: the training-class index, or the class name (class_label).
CLASS_ID_FORMATS = ("index", "name")


def stamp_ns(header):
    """A std_msgs/Header's stamp in integer nanoseconds, the key frames are matched by."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def class_label(class_id, class_names, class_id_format):
    """The ObjectHypothesis.class_id string: the training-class index, or its name."""
    if class_id_format == "name" and 0 <= class_id < len(class_names):
        return class_names[class_id]
    return str(class_id)


def class_labels(class_ids, class_names, class_id_format):
    """The class_label strings [n] of training-class indices [n]."""
    return [class_label(class_id, class_names, class_id_format) for class_id in np.asarray(class_ids).tolist()]


def label_info(header, class_names, threshold):
    """vision_msgs/LabelInfo: class index -> name, and the score threshold in force."""
    class_map = [VisionClass(class_id=index, class_name=name) for index, name in enumerate(class_names)]
    return LabelInfo(header=header, class_map=class_map, threshold=float(threshold))


def _milliseconds(value):
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def stream_status(name, hardware_id, summary, provider):
    """DiagnosticStatus of one camera stream from a node_statistics.StreamSummary."""
    if summary.received_total == 0 or summary.input_hz == 0.0:
        level, message = DiagnosticStatus.WARN, "no images received"
    elif summary.rejected_in_period:
        level, message = DiagnosticStatus.WARN, f"rejected {summary.rejected_in_period} malformed images"
    else:
        level, message = DiagnosticStatus.OK, "detecting"
    values = {
        "input_rate_hz": f"{summary.input_hz:.2f}",
        "output_rate_hz": f"{summary.output_hz:.2f}",
        "latency_p50_ms": _milliseconds(summary.latency_p50_ms),
        "latency_p99_ms": _milliseconds(summary.latency_p99_ms),
        "inference_p50_ms": _milliseconds(summary.inference_p50_ms),
        "node_overhead_p50_ms": _milliseconds(summary.overhead_p50_ms),
        "wait_p50_ms": _milliseconds(summary.wait_p50_ms),
        "publish_p50_ms": _milliseconds(summary.publish_p50_ms),
        "frame_age_p50_ms": _milliseconds(summary.age_p50_ms),
        "frame_age_max_ms": _milliseconds(summary.age_max_ms),
        "received": str(summary.received_total),
        "published": str(summary.published_total),
        "dropped": str(summary.dropped_total),
        "rejected": str(summary.rejected_total),
        "provider": provider,
    }
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=key, value=value) for key, value in values.items()],
    )


def _byte_array(payload):
    data = array.array("B")
    data.frombytes(payload)  # one copy; assigning bytes to a message field checks every byte in Python
    return data


def image_message(header, rgb, encoding):
    """sensor_msgs/Image of an RGB uint8 [H, W, 3] array in any supported encoding."""
    payload, step = encode_image(rgb, encoding)
    return Image(
        header=header, height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, is_bigendian=0, step=step,
        data=_byte_array(payload),
    )


def compressed_image_message(header, rgb, format_field):
    """sensor_msgs/CompressedImage ('jpeg' or 'png') of an RGB uint8 [H, W, 3] array."""
    return CompressedImage(header=header, format=format_field, data=_byte_array(encode_compressed(rgb, format_field)))
