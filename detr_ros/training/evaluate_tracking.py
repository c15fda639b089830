"""Tracking metrics of a model with the runtime's tracker on videos with identities (``detr-ros eval --tracking``).

The dataset is a COCO folder whose images carry ``video_id``, ``frame_index`` and ``stamp_ns`` and
whose annotations carry ``track_id`` (``detr-ros synth --video``). Each video's frames go, in
order, through the model (ONNX through the runtime, or a checkpoint in PyTorch) and one Tracker,
exactly as the node runs them; the tracks with ids are scored against the identities
(tracking_metrics: MOTA, IDF1, identity switches).
"""

import json
from pathlib import Path

import cv2
import numpy as np

from detr_ros.errors import DatasetError
from detr_ros.runtime.detections import DEFAULT_DUPLICATE_IOU, DEFAULT_SCORE_THRESHOLD
from detr_ros.runtime.tracking import Tracker, TrackerSettings
from detr_ros.synthetic.dataset import ANNOTATIONS_FILE, IMAGES_DIR
from detr_ros.tools.detect import load_detector
from detr_ros.tracking_metrics import tracking_metrics

_VIDEO_IMAGE_KEYS = ("video_id", "frame_index", "stamp_ns")


def videos_of(coco, annotation_file):
    """{video_id: [(image entry, [annotations])] in frame order} of a COCO video dataset."""
    images = coco.get("images", [])
    if not images or any(k not in image for image in images for k in _VIDEO_IMAGE_KEYS) or any(
            "track_id" not in a for a in coco.get("annotations", [])):
        raise DatasetError(f"{annotation_file}: not a video dataset with identities; expected images with "
                           f"{', '.join(_VIDEO_IMAGE_KEYS)} and annotations with track_id "
                           "(detr-ros synth --video writes them)")
    by_image = {image["id"]: [] for image in images}
    for annotation in coco["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    videos = {}
    for image in sorted(images, key=lambda entry: (entry["video_id"], entry["frame_index"])):
        videos.setdefault(image["video_id"], []).append((image, by_image[image["id"]]))
    return videos


def _xyxy(coco_boxes):
    boxes = np.asarray(coco_boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def evaluate_tracking(model_path, data_dir, *, score_threshold=DEFAULT_SCORE_THRESHOLD,
                      duplicate_iou=DEFAULT_DUPLICATE_IOU, settings=None):
    """Tracking metrics (tracking_metrics' dict, plus "num_videos" and "num_frames") of a model on a dataset folder.

    score_threshold: the published threshold (the tracker's strong detections); the model runs down
    to ``settings.low_score`` (TrackerSettings, default ByteTrack's).
    """
    settings = settings or TrackerSettings()
    annotation_file = Path(data_dir) / ANNOTATIONS_FILE
    if not annotation_file.is_file():
        raise DatasetError(f"{data_dir}: no {ANNOTATIONS_FILE}; expected a folder written by detr-ros synth --video")
    videos = videos_of(json.loads(annotation_file.read_text()), annotation_file)
    detector = load_detector(Path(model_path), settings.detection_threshold(score_threshold), duplicate_iou)
    scored = []
    for frames in videos.values():
        tracker = Tracker(settings)
        scored.append([])
        for image, annotations in frames:
            path = Path(data_dir) / IMAGES_DIR / image["file_name"]
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise DatasetError(f"{path}: OpenCV cannot read this image")
            found, track_ids = tracker.track(detector.detect(bgr, "bgr"), image["stamp_ns"], score_threshold)
            tracked = track_ids > 0
            scored[-1].append(([a["track_id"] for a in annotations], _xyxy([a["bbox"] for a in annotations]),
                               track_ids[tracked], found.boxes[tracked]))
    metrics = tracking_metrics(scored)
    metrics.update(num_videos=len(videos), num_frames=sum(len(frames) for frames in videos.values()))
    return metrics
