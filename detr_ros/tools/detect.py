"""A model on images, folders, videos and rosbag2 recordings, written out annotated and as COCO results.

The model is an ONNX file (run through the runtime, no torch) or a detr_ros checkpoint (``.pt``/``.pth``,
run in PyTorch through the same detection path as its export). Each input is an image, a folder of
images, a video file, or a rosbag2 recording (its folder, or the ``.db3``/``.mcap`` file in it; read
with ``rosbags``), of which every sensor_msgs/Image and CompressedImage topic is read (or the topics
asked for). Written to the output folder: each image annotated under its own name, each video and
bag topic as an annotated MP4, ``images.json`` (COCO "images": which picture each id is) and the
detections as a COCO results list (default ``OUT/detections.json``) with the model's dataset
category ids. With ``tracking``, each video and bag topic runs through the node's tracker: boxes are
labelled with their track ids, and each result carries ``track_id`` (0: not yet confirmed).
"""

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detr_ros.coco_metrics import coco_results
from detr_ros.errors import ConfigError, DatasetError, DetrRosError, ModelFileError
from detr_ros.ros.image_conversion import ImageMessageError, decode_compressed_message, decode_image_message
from detr_ros.runtime.detections import DEFAULT_DUPLICATE_IOU, DEFAULT_SCORE_THRESHOLD, check_fraction
from detr_ros.runtime.drawing import draw_detections
from detr_ros.runtime.encoded_images import EncodedImageError, read_image_file
from detr_ros.runtime.tracking import Tracker, TrackerSettings

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
BAG_FILE_SUFFIXES = (".db3", ".mcap")
CHECKPOINT_SUFFIXES = (".pt", ".pth")
IMAGE_MESSAGE_TYPES = {
    "sensor_msgs/msg/Image": decode_image_message,
    "sensor_msgs/msg/CompressedImage": decode_compressed_message,
}
DEFAULT_VIDEO_FPS = 10.0


@dataclass
class Frame:
    """One picture to run the model on. stream: the output it belongs to (one per image, video, bag topic)."""

    stream: str
    image: np.ndarray
    color_order: str
    source: str
    index: int = 0
    stamp_ns: int = None


def load_detector(path, score_threshold, duplicate_iou, format_options=None):
    """The runtime Detector for an ONNX file, a CheckpointDetector for a .pt/.pth checkpoint.

    format_options: Detector keyword arguments for reading a foreign ONNX file (model_format,
    resize_mode, normalization); a checkpoint carries its own and refuses them."""
    check_fraction("score_threshold", score_threshold)
    check_fraction("duplicate_iou", duplicate_iou)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file, expected an ONNX file or a detr_ros checkpoint (.pt)")
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        if format_options:
            raise ConfigError(f"{', '.join(sorted(format_options))}: for ONNX files only; {path} is a checkpoint")
        from detr_ros.tools.checkpoint_detector import CheckpointDetector

        return CheckpointDetector(path, score_threshold=score_threshold, duplicate_iou=duplicate_iou)
    from detr_ros.runtime import Detector

    return Detector(path, score_threshold=score_threshold, duplicate_iou=duplicate_iou, **(format_options or {}))


def bag_folder(path):
    """The rosbag2 folder of ``path`` (the folder itself, or the folder of its .db3/.mcap file), or None."""
    if path.is_dir() and (path / "metadata.yaml").is_file():
        return path
    if path.is_file() and path.suffix.lower() in BAG_FILE_SUFFIXES and (path.parent / "metadata.yaml").is_file():
        return path.parent
    return None


def classify_inputs(inputs):
    """[(kind, path)] with kind "image" | "video" | "bag"; folders give their images, sorted by name."""
    sources = []
    for path in inputs:
        bag = bag_folder(path)
        if bag is not None:
            sources.append(("bag", bag))
        elif path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise DatasetError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) and no rosbag2 metadata.yaml "
                                   "in this folder")
            sources += [("image", p) for p in images]
        elif not path.exists():
            raise DatasetError(f"{path}: no such file or folder")
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            sources.append(("image", path))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            sources.append(("video", path))
        elif path.suffix.lower() in BAG_FILE_SUFFIXES:
            raise DatasetError(f"{path}: a rosbag2 file without metadata.yaml beside it; give the recording's folder")
        else:
            raise DatasetError(f"{path}: not an image ({', '.join(IMAGE_SUFFIXES)}), video "
                               f"({', '.join(VIDEO_SUFFIXES)}) or rosbag2 recording")
    return sources


def image_frames(path):
    image = read_image_file(path)
    yield Frame(stream=str(path), image=image, color_order="bgr", source=str(path))


def video_frames(path):
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DatasetError(f"{path}: OpenCV cannot open this video")
    try:
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            yield Frame(stream=str(path), image=image, color_order="bgr", source=str(path), index=index)
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise DatasetError(f"{path}: the video has no frame OpenCV can decode")


def video_rate(path):
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return fps if fps and math.isfinite(fps) and fps > 0 else DEFAULT_VIDEO_FPS


def bag_topics(path, wanted):
    """{topic: (message type, frames per second)} of the image topics to read from the bag at ``path``."""
    from rosbags.rosbag2 import Reader

    with Reader(path) as reader:
        duration_s = max(reader.duration / 1e9, 1e-9)
        found = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections if c.msgtype in IMAGE_MESSAGE_TYPES}
        everything = sorted({f"{c.topic} ({c.msgtype})" for c in reader.connections})
    if wanted:
        missing = [t for t in wanted if t not in found]
        if missing:
            raise DatasetError(f"{path}: no image topic {', '.join(missing)}; the recording has "
                               f"{', '.join(everything) or 'no topics'}")
        found = {t: found[t] for t in wanted}
    if not found:
        raise DatasetError(f"{path}: no sensor_msgs/Image or CompressedImage topic; the recording has "
                           f"{', '.join(everything) or 'no topics'}")
    return {topic: (msgtype, max(count - 1, 1) / duration_s) for topic, (msgtype, count) in found.items()}


def bag_frames(path, topics):
    """Frames of ``topics`` in recording order; an undecodable message is reported and skipped."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.LATEST)
    indices = dict.fromkeys(topics, 0)
    with Reader(path) as reader:
        connections = [c for c in reader.connections if c.topic in topics]
        for connection, _, raw in reader.messages(connections=connections):
            message = typestore.deserialize_cdr(raw, connection.msgtype)
            index = indices[connection.topic]
            indices[connection.topic] += 1
            try:
                image, color_order = IMAGE_MESSAGE_TYPES[connection.msgtype](message)
            except ImageMessageError as error:
                print(f"detr-ros detect: {path} {connection.topic} message {index}: skipped: {error}", file=sys.stderr)
                continue
            stamp_ns = message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec
            yield Frame(stream=f"{path}:{connection.topic}", image=image, color_order=color_order,
                        source=f"{path}:{connection.topic}", index=index, stamp_ns=stamp_ns)


class Outputs:
    """Annotated images and videos in the output folder, each under a name of its own."""

    def __init__(self, folder, inputs):
        self.folder = folder
        self._protected = {p.resolve() for p in inputs}
        self._taken = set()
        self._videos = {}  # stream -> (cv2.VideoWriter, path, (width, height))
        self.written = []

    def _name(self, stem, suffix):
        candidate, number = f"{stem}{suffix}", 1
        while candidate in self._taken or (self.folder / candidate).resolve() in self._protected:
            number += 1
            candidate = f"{stem}_{number}{suffix}"
        self._taken.add(candidate)
        return self.folder / candidate

    def write_image(self, source, annotated_bgr):
        path = self._name(Path(source).stem, Path(source).suffix.lower())
        if not cv2.imwrite(str(path), annotated_bgr):
            raise DetrRosError(f"OpenCV cannot write {path}")
        self.written.append(path)
        return path

    def write_video_frame(self, stream, stem, fps, annotated_bgr):
        if stream not in self._videos:
            path = self._name(stem, ".mp4")
            size = (annotated_bgr.shape[1], annotated_bgr.shape[0])
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), float(np.clip(fps, 1.0, 120.0)), size)
            if not writer.isOpened():
                raise DetrRosError(f"OpenCV cannot write an mp4v video to {path}")
            self._videos[stream] = (writer, path, size)
            self.written.append(path)
        writer, path, size = self._videos[stream]
        if (annotated_bgr.shape[1], annotated_bgr.shape[0]) != size:  # a camera that changed resolution
            annotated_bgr = cv2.resize(annotated_bgr, size, interpolation=cv2.INTER_AREA)
        writer.write(annotated_bgr)
        return path

    def close(self):
        for writer, _, _ in self._videos.values():
            writer.release()
        self._videos.clear()


def _stream_frames(kind, path, topics):
    """(frames, how to name and pace the stream's video or None for stills)."""
    if kind == "image":
        return image_frames(path), None
    if kind == "video":
        return video_frames(path), {str(path): (path.stem, video_rate(path))}
    rates = bag_topics(path, topics)
    return bag_frames(path, rates), {f"{path}:{topic}": (f"{path.name}{topic.replace('/', '_')}", fps)
                                     for topic, (_, fps) in rates.items()}


def _write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(value, indent=1))
    partial.replace(path)


def _stamp_ns(frame, fps):
    """A frame's time: its recorded stamp (bags), else its index at the video's rate."""
    return frame.stamp_ns if frame.stamp_ns is not None else round(frame.index * 1e9 / fps)


def detect_files(model_path, inputs, out, *, json_path=None, topics=None, score_threshold=DEFAULT_SCORE_THRESHOLD,
                 duplicate_iou=DEFAULT_DUPLICATE_IOU, tracking=False, format_options=None):
    """Run the model on every input and write the outputs to the folder ``out``; prints a line per stream.

    json_path: the COCO results file (default OUT/detections.json); topics: rosbag2 image topics to
    read (None: every image topic); tracking: track objects through each video and bag topic (the
    node's tracker, default settings). Returns {"images", "detections": counts, "json",
    "images_json": the paths written, "skipped": unreadable images}.
    """
    inputs, out = [Path(p) for p in inputs], Path(out)
    sources = classify_inputs(inputs)
    trackers = {}  # stream -> Tracker
    detector = load_detector(Path(model_path), TrackerSettings().detection_threshold(score_threshold) if tracking
                             else score_threshold, duplicate_iou, format_options)
    json_path = Path(json_path) if json_path is not None else out / "detections.json"
    if json_path.resolve() in {p.resolve() for p in inputs}:
        raise ConfigError(f"the results file {json_path} is one of the inputs; it would be overwritten")
    out.mkdir(parents=True, exist_ok=True)
    outputs = Outputs(out, [p for _, p in sources])
    images, results, skipped = [], [], []
    try:
        for kind, path in sources:
            frames, videos = _stream_frames(kind, path, topics)
            counts = {}
            try:
                frame_list = list(frames) if kind == "image" else frames
            except (DatasetError, EncodedImageError) as error:  # one unreadable picture does not stop a folder
                print(f"detr-ros detect: skipped {error}", file=sys.stderr)
                skipped.append(path)
                continue
            for frame in frame_list:
                detections = detector.detect(frame.image, frame.color_order)
                track_ids = None
                if tracking and videos is not None:
                    tracker = trackers.setdefault(frame.stream, Tracker())
                    detections, track_ids = tracker.track(detections, _stamp_ns(frame, videos[frame.stream][1]),
                                                          score_threshold)
                elif tracking:  # a still picture has no track to join
                    detections = detections.above(score_threshold)
                image_id = len(images) + 1
                entry = {"id": image_id, "file_name": frame.source, "width": frame.image.shape[1],
                         "height": frame.image.shape[0]}
                if kind != "image":
                    entry["frame"] = frame.index
                if frame.stamp_ns is not None:
                    entry["stamp_ns"] = frame.stamp_ns
                images.append(entry)
                found = coco_results(image_id, detections.boxes, detections.scores, detections.class_ids,
                                     detector.category_ids)
                labels = [detector.class_name(c) for c in detections.class_ids.tolist()]
                if track_ids is not None:
                    for result, track_id in zip(found, track_ids.tolist()):
                        result["track_id"] = track_id
                    labels = [f"{label} #{track_id}" if track_id else label
                              for label, track_id in zip(labels, track_ids.tolist())]
                results += found
                drawn = cv2.cvtColor(draw_detections(frame.image, frame.color_order, detections.boxes,
                                                     detections.scores, detections.class_ids, labels),
                                     cv2.COLOR_RGB2BGR)
                if videos is None:
                    written = outputs.write_image(frame.source, drawn)
                else:
                    written = outputs.write_video_frame(frame.stream, *videos[frame.stream], drawn)
                frame_count, detection_count, _ = counts.get(frame.stream, (0, 0, written))
                counts[frame.stream] = (frame_count + 1, detection_count + len(detections), written)
            for stream, (frame_count, detection_count, written) in counts.items():
                print(f"{stream}: {frame_count} frame{'s' * (frame_count != 1)}, {detection_count} detections "
                      f"-> {written}")
    finally:
        outputs.close()
    _write_json(out / "images.json", {"images": images})
    _write_json(json_path, results)
    return {"images": len(images), "detections": len(results), "json": json_path, "images_json": out / "images.json",
            "skipped": skipped}
