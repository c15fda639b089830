"""The ``detection_recorder`` node: what a camera -> detector run looked like, written to a folder.

Subscribes to a camera's images, the detector's ``detections`` and ``label_info`` for that camera
(the topic names the detector derives from the image topic) and, optionally, a ground-truth
Detection2DArray topic (the synthetic camera's). Messages are paired by header stamp. When the
run ends (frame count, duration, or the camera went quiet) it writes to ``output_dir``:

- ``annotated.mp4``: every answered frame with its detections drawn (mp4v), played back at the
  rate the frames were answered;
- ``contact_sheet.png``: a grid of a few answered frames spread over the run;
- ``top_down.png``: where the detector placed the objects in 3D over the run, seen from above,
  one line per track (when the detector publishes ``<ns>/detections_3d``);
- ``recording.json``: counts, end-to-end latency (image stamp to detections received here) and,
  per answered frame, its detections and ground truth, for scoring afterwards (``detr-ros demo``).
"""

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray, Detection3DArray, LabelInfo

from detr_ros.errors import DetrRosError
from detr_ros.ros import messages
from detr_ros.ros.detector_parameters import RELIABILITIES, camera_topics
from detr_ros.ros.executable import run_node
from detr_ros.ros.image_conversion import ImageMessageError, decode_compressed_message, decode_image_message
from detr_ros.ros.parameters import ParameterSpec, declare_parameters
from detr_ros.runtime.drawing import draw_detections, tile_grid
from detr_ros.runtime.top_down import draw_top_down

NODE_NAME = "detection_recorder"
VIDEO_NAME = "annotated.mp4"
CONTACT_SHEET_NAME = "contact_sheet.png"
TOP_DOWN_NAME = "top_down.png"
RECORDING_NAME = "recording.json"
CHECK_PERIOD_S = 0.1
# After the input ends, the run is over once no detections came for this long.
ANSWER_GRACE_S = 2.0
# Images kept for the video (JPEG-encoded, so that a long run stays in memory); later frames are only counted
# and scored.
VIDEO_FRAME_LIMIT = 3000
CONTACT_SHEET_COLUMNS = 3
CONTACT_SHEET_TILE_WIDTH = 320
JPEG_QUALITY = 92

PARAMETERS = (
    ParameterSpec("image_topic", "image", "camera image topic; the detector's outputs for it are read from "
                  "<ns>/detections and <ns>/label_info"),
    ParameterSpec("compressed", False, "read the camera as sensor_msgs/CompressedImage on <image_topic>/compressed"),
    ParameterSpec("ground_truth_topic", "ground_truth", "vision_msgs/Detection2DArray ground truth with the images' "
                  "stamps (the synthetic camera's); empty: none"),
    ParameterSpec("output_dir", "recording", "folder for annotated.mp4, contact_sheet.png and recording.json"),
    ParameterSpec("max_frames", 0, "stop after this many images; 0: no limit", low=0, high=2**31 - 1),
    ParameterSpec("duration_s", 0.0, "stop this many seconds after the first image; 0: no limit",
                  low=0.0, high=86400.0),
    ParameterSpec("idle_timeout_s", 3.0, "stop when no image came for this long (the camera ended)",
                  low=0.1, high=3600.0),
    ParameterSpec("start_timeout_s", 60.0, "fail when no image comes within this long of starting",
                  low=0.1, high=3600.0),
    ParameterSpec("qos_reliability", "best_effort", "image subscription reliability", choices=RELIABILITIES),
    ParameterSpec("contact_sheet_frames", 6, "frames on the contact sheet", low=1, high=64),
    ParameterSpec("show_ids", False, "label drawn boxes with their Detection2D.id (the detector's track ids)"),
)


def detection_arrays(msg, class_names):
    """A Detection2DArray as arrays: boxes [n, 4] xyxy pixels, scores [n], class_ids [n] (-1: unknown class).

    Each detection's first hypothesis gives its class: an index, or a class name from ``class_names``.
    """
    boxes, scores, class_ids = [], [], []
    for detection in msg.detections:
        if not detection.results:
            continue
        box = detection.bbox
        half_w, half_h = box.size_x / 2.0, box.size_y / 2.0
        centre = box.center.position
        boxes.append((centre.x - half_w, centre.y - half_h, centre.x + half_w, centre.y + half_h))
        hypothesis = detection.results[0].hypothesis
        scores.append(hypothesis.score)
        label = hypothesis.class_id
        if label.isdigit():
            class_ids.append(int(label))
        else:
            class_ids.append(class_names.index(label) if label in class_names else -1)
    return (np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
            np.array(class_ids, np.int64))


def _percentile(values, q):
    return round(float(np.percentile(values, q)), 2) if values else None


def _detections_json(boxes, scores, class_ids, ids=None):
    found = [{"box": [round(v, 2) for v in box], "score": round(score, 4), "class_id": class_id}
             for box, score, class_id in zip(boxes.tolist(), scores.tolist(), class_ids.tolist())]
    for entry, detection_id in zip(found, ids or []):
        entry["id"] = detection_id
    return found


def _truth_json(boxes, class_ids):
    return [{"box": [round(v, 2) for v in box], "class_id": class_id}
            for box, class_id in zip(boxes.tolist(), class_ids.tolist())]


class Recording:
    """Images, ground truth and detections of one run, paired by header stamp; no ROS needed.

    A frame counts as in when its image or its ground truth arrived (the ground truth is sent
    reliably with a deeper queue, so it also counts frames whose image this node missed), and as
    answered when its detections arrived. Images are kept JPEG-encoded until written.
    """

    def __init__(self, show_ids=False):
        self.class_names = []
        self.show_ids = show_ids
        self._positions = {}  # id -> [(stamp_ns, x, z)] from Detection3DArray, metres
        self._frames = {}  # stamp_ns -> dict(image=(jpeg, color_order, width, height), truth=..., detections=...)
        self._stored_images = 0

    def knows(self, stamp_ns):
        return stamp_ns in self._frames

    def _frame(self, stamp_ns):
        return self._frames.setdefault(stamp_ns, {"image": None, "truth": None, "detections": None, "latency_ms": None,
                                                    "ids": None})

    def _frames_in(self):
        """(stamp, frame) of the frames whose image or ground truth came, in stamp order."""
        return [(stamp, f) for stamp, f in sorted(self._frames.items())
                if f["image"] is not None or f["truth"] is not None]

    @property
    def frames_answered(self):
        return sum(1 for _, f in self._frames_in() if f["detections"] is not None)

    @property
    def waiting(self):
        """Frames in still waiting for their detections."""
        return sum(1 for _, f in self._frames_in() if f["detections"] is None)

    def add_image(self, stamp_ns, image, color_order):
        """image: uint8 [H, W, 3] in ``color_order`` ("rgb" | "bgr")."""
        jpeg = None
        if self._stored_images < VIDEO_FRAME_LIMIT:  # beyond it, frames are counted and scored, not drawn
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise ImageMessageError(f"OpenCV could not encode a {image.shape} image as JPEG")
            self._stored_images += 1
        self._frame(stamp_ns)["image"] = (jpeg, color_order, image.shape[1], image.shape[0])

    def add_ground_truth(self, stamp_ns, boxes, class_ids):
        """boxes: [n, 4] xyxy pixels; class_ids: [n] training-class indices."""
        self._frame(stamp_ns)["truth"] = (boxes, class_ids)

    def add_detections(self, stamp_ns, detections, latency_ms, ids=None):
        """detections: (boxes [n, 4] xyxy, scores [n], class_ids [n]) of the image stamped ``stamp_ns``;
        ids: their Detection2D.id strings."""
        frame = self._frame(stamp_ns)
        frame["detections"], frame["latency_ms"], frame["ids"] = detections, latency_ms, ids

    def add_positions(self, stamp_ns, ids, centres):
        """ids: [n] Detection3D.id strings; centres: [n, 3] metres in the camera's optical frame."""
        for detection_id, (x, _, z) in zip(ids, np.asarray(centres, np.float64).reshape(-1, 3).tolist()):
            self._positions.setdefault(detection_id, []).append((stamp_ns, x, z))

    def _annotated(self, frame):
        jpeg, color_order = frame["image"][:2]
        image = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)  # back in the order it was encoded in
        boxes, scores, class_ids = frame["detections"]
        names = [self.class_names[c] if 0 <= c < len(self.class_names) else f"class_{c}" for c in class_ids.tolist()]
        if self.show_ids and frame["ids"]:
            names = [f"{name} #{i}" if i else name for name, i in zip(names, frame["ids"])]
        return cv2.cvtColor(draw_detections(image, color_order, boxes, scores, class_ids, names), cv2.COLOR_RGB2BGR)

    def write(self, folder, contact_sheet_frames, details):
        """Write the video, contact sheet and recording.json to ``folder``; returns the JSON summary.

        details: extra entries for the summary (topics, reason the run ended).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # Detections of a frame this recorder never saw (sent before it listened) are left out.
        frames_in = self._frames_in()
        answered = [(stamp, f) for stamp, f in frames_in if f["detections"] is not None]
        latencies_ms = [f["latency_ms"] for _, f in answered]
        drawable = [(stamp, f) for stamp, f in answered if f["image"] is not None and f["image"][0] is not None]
        outputs = {}
        if drawable:
            outputs["video"] = self._write_video(folder / VIDEO_NAME, drawable)
            outputs["contact_sheet"] = self._write_contact_sheet(folder / CONTACT_SHEET_NAME, drawable,
                                                                 contact_sheet_frames)
        tracks = {i: [(x, z) for _, x, z in sorted(path)] for i, path in self._positions.items() if i}
        if tracks:
            outputs["top_down"] = str(folder / TOP_DOWN_NAME)
            if not cv2.imwrite(outputs["top_down"], draw_top_down(tracks)):
                raise DetrRosError(f"OpenCV cannot write {outputs['top_down']}")
        span_s = (answered[-1][0] - answered[0][0]) / 1e9 if len(answered) > 1 else 0.0
        summary = dict(details)
        summary.update({
            "frames_in": len(frames_in),
            "frames_answered": len(answered),
            "dropped": len(frames_in) - len(answered),
            "answered_hz": round((len(answered) - 1) / span_s, 2) if span_s > 0 else None,
            "latency_ms": {"p50": _percentile(latencies_ms, 50), "p99": _percentile(latencies_ms, 99),
                           "measured": "image header stamp to detections received by the recorder"},
            "class_names": list(self.class_names),
            "outputs": outputs,
            "frames": [self._frame_json(stamp, f) for stamp, f in answered],
        })
        partial = folder / f".{RECORDING_NAME}.partial"
        partial.write_text(json.dumps(summary, indent=1))
        partial.replace(folder / RECORDING_NAME)
        return summary

    @staticmethod
    def _frame_json(stamp_ns, frame):
        width, height = frame["image"][2:] if frame["image"] is not None else (None, None)
        return {
            "stamp_ns": stamp_ns,
            "width": width,
            "height": height,
            "latency_ms": round(frame["latency_ms"], 2),
            "detections": _detections_json(*frame["detections"], frame["ids"]),
            "ground_truth": None if frame["truth"] is None else _truth_json(*frame["truth"]),
        }

    @staticmethod
    def _playback_rate(frames):
        """Frames per second at which the answered frames came, so the video plays at real speed."""
        span_s = (frames[-1][0] - frames[0][0]) / 1e9
        return float(np.clip((len(frames) - 1) / span_s, 1.0, 60.0)) if span_s > 0 else 1.0

    def _write_video(self, path, frames):
        width, height = frames[0][1]["image"][2:]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self._playback_rate(frames),
                                 (width, height))
        if not writer.isOpened():
            raise DetrRosError(f"OpenCV cannot write an mp4v video to {path}")
        try:
            for _, frame in frames:
                image = self._annotated(frame)
                if image.shape[:2] != (height, width):  # the camera changed resolution mid-run
                    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
                writer.write(image)
        finally:
            writer.release()
        return str(path)

    def _write_contact_sheet(self, path, frames, count):
        spread = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
        chosen = [frames[i] for i in np.unique(spread)]
        tiles = []
        for _, frame in chosen:
            image = self._annotated(frame)
            scale = CONTACT_SHEET_TILE_WIDTH / image.shape[1]
            tiles.append(cv2.resize(image, (CONTACT_SHEET_TILE_WIDTH, max(1, round(image.shape[0] * scale))),
                                    interpolation=cv2.INTER_AREA))
        sheet = tile_grid(tiles, CONTACT_SHEET_COLUMNS)
        if not cv2.imwrite(str(path), sheet):
            raise DetrRosError(f"OpenCV cannot write {path}")
        return str(path)


class DetectionRecorder(Node):
    """Collects one run into a Recording; ``finished`` turns true when the run is over."""

    def __init__(self, **node_options):
        super().__init__(NODE_NAME, **node_options)
        self.values = declare_parameters(self, PARAMETERS)
        self.camera = camera_topics(self.values["image_topic"], self.values["compressed"])
        self.recording = Recording(self.values["show_ids"])
        self.finished = False
        self.failure = None
        self.end_reason = None
        self._started = time.monotonic()
        self._first_image = self._last_image = self._closing_since = self._last_detections = None
        self._images_received = 0
        reliability = ReliabilityPolicy.RELIABLE if self.values["qos_reliability"] == "reliable" \
            else ReliabilityPolicy.BEST_EFFORT
        if self.camera.compressed:
            self.create_subscription(CompressedImage, self.camera.image, self._make_image_callback(
                decode_compressed_message), QoSProfile(depth=10, reliability=reliability))
        else:
            self.create_subscription(Image, self.camera.image, self._make_image_callback(decode_image_message),
                                     QoSProfile(depth=10, reliability=reliability))
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Detection2DArray, self.camera.detections, self._on_detections, reliable)
        detections_3d = f"{self.camera.detections[: -len('detections')]}detections_3d"
        self.create_subscription(Detection3DArray, detections_3d, self._on_detections_3d, reliable)
        self.create_subscription(LabelInfo, self.camera.label_info, self._on_label_info, QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        truth_topic = self.values["ground_truth_topic"]
        if truth_topic:
            self.create_subscription(Detection2DArray, truth_topic, self._on_ground_truth, reliable)
        self.create_timer(CHECK_PERIOD_S, self._check_progress)
        self.get_logger().info(
            f"recording {self.camera.image} with {self.camera.detections}"
            f"{f' and ground truth {truth_topic}' if truth_topic else ''} into {self.values['output_dir']}")

    def _make_image_callback(self, decode):
        def on_image(msg):
            if self._closing_since is not None and not self.recording.knows(messages.stamp_ns(msg.header)):
                return  # a frame after the end of the run
            try:
                image, color_order = decode(msg)
            except ImageMessageError as error:
                self.get_logger().warning(f"skipped a message on {self.camera.image}: {error}",
                                          throttle_duration_sec=5.0)
                return
            self._last_image = time.monotonic()
            self._images_received += 1
            if self._first_image is None:
                self._first_image = self._last_image
                self.get_logger().info(f"first image: {image.shape[1]}x{image.shape[0]}")
            self.recording.add_image(messages.stamp_ns(msg.header), image, color_order)

        return on_image

    def _on_detections(self, msg):
        stamp_ns = messages.stamp_ns(msg.header)
        latency_ms = (self.get_clock().now().nanoseconds - stamp_ns) / 1e6
        self._last_detections = time.monotonic()
        self.recording.add_detections(stamp_ns, detection_arrays(msg, self.recording.class_names), latency_ms,
                                      [d.id for d in msg.detections if d.results])

    def _on_detections_3d(self, msg):
        centres = [(d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z)
                   for d in msg.detections]
        self.recording.add_positions(messages.stamp_ns(msg.header), [d.id for d in msg.detections], centres)

    def _on_label_info(self, msg):
        names = [""] * (max((c.class_id for c in msg.class_map), default=-1) + 1)
        for vision_class in msg.class_map:
            names[vision_class.class_id] = vision_class.class_name
        self.recording.class_names = names

    def _on_ground_truth(self, msg):
        stamp_ns = messages.stamp_ns(msg.header)
        if self._closing_since is not None and not self.recording.knows(stamp_ns):
            return  # a frame after the end of the run
        boxes, _, class_ids = detection_arrays(msg, self.recording.class_names)
        self.recording.add_ground_truth(stamp_ns, boxes, class_ids)

    def _check_progress(self):
        now = time.monotonic()
        if self._closing_since is not None:
            quiet_since = max(self._closing_since, self._last_detections or self._closing_since)
            if self.recording.waiting == 0 or now - quiet_since >= ANSWER_GRACE_S:
                self.finished = True
            return
        if self._first_image is None:
            if now - self._started >= self.values["start_timeout_s"]:
                self.failure = (f"no image on {self.camera.image} within {self.values['start_timeout_s']:g} s; "
                                f"is the camera running and publishing there?")
                self.finished = True
            return
        max_frames, duration = self.values["max_frames"], self.values["duration_s"]
        if max_frames and self._images_received >= max_frames:
            self._close(f"{max_frames} frames recorded")
        elif duration and now - self._first_image >= duration:
            self._close(f"{duration:g} s recorded")
        elif now - self._last_image >= self.values["idle_timeout_s"]:
            self._close(f"no image for {self.values['idle_timeout_s']:g} s")

    def _close(self, reason):
        self.end_reason = reason
        self._closing_since = time.monotonic()
        self.get_logger().info(f"input ended ({reason}); waiting for the last detections")

    def close(self, interrupted):
        """Write the outputs; a stopped run leaves what it recorded, a failed one raises DetrRosError."""
        if interrupted:
            self.end_reason = "interrupted"
            if self.recording.frames_answered:
                self.write()
            return
        if self.failure:
            raise DetrRosError(self.failure)
        self.write()

    def write(self):
        """Write the outputs; returns the summary dict."""
        details = {"image_topic": self.camera.image, "detections_topic": self.camera.detections,
                   "ground_truth_topic": self.values["ground_truth_topic"] or None, "end_reason": self.end_reason}
        summary = self.recording.write(self.values["output_dir"], self.values["contact_sheet_frames"], details)
        latency = summary["latency_ms"]
        self.get_logger().info(
            f"{summary['frames_in']} frames in, {summary['frames_answered']} answered, {summary['dropped']} dropped, "
            f"latency p50 {latency['p50']} ms p99 {latency['p99']} ms; wrote {self.values['output_dir']}")
        return summary


def main(args=None):
    return run_node(DetectionRecorder, NODE_NAME, "Records a camera -> detector run: annotated video, contact sheet "
                    "and a JSON of the detections, ground truth and end-to-end latency, then exits.", PARAMETERS, args)


if __name__ == "__main__":
    sys.exit(main())
