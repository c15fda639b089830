"""Synthetic scenes written as a COCO-format dataset: ``OUT/annotations.json`` and ``OUT/images/``.

``synthesize`` writes independent still scenes, or consecutive frames of one synthetic video;
a held-out split is the same call with another seed. A video's images also carry ``video_id``,
``frame_index`` and ``stamp_ns`` (the frame's time at the video's rate), and its annotations the
object's ``track_id``, as video datasets with identities (TAO, MOT converted to COCO) do.
"""

import json
import os
from pathlib import Path

import cv2

from detr_ros.errors import ConfigError, DatasetError
from detr_ros.synthetic.scene import SceneGenerator
from detr_ros.synthetic.shapes import CLASSES
from detr_ros.synthetic.video import SceneVideo

ANNOTATIONS_FILE = "annotations.json"
IMAGES_DIR = "images"
# The synthetic camera node's default rate: a video's stamps as that camera would give them.
DEFAULT_VIDEO_RATE_HZ = 10.0


def coco_categories():
    return [{"id": c.category_id, "name": c.name, "supercategory": "shape"} for c in CLASSES]


def write_dataset(out_dir, pictures, width, height, description, rate_hz=None):
    """Write ``pictures`` (an iterable of (bgr, annotations)) as a COCO dataset in ``out_dir``.

    rate_hz: the pictures are consecutive frames of one video at this rate (None: still scenes).
    Returns the COCO dictionary that was written.
    """
    out_dir = Path(out_dir)
    (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, (bgr, objects) in enumerate(pictures, start=1):
        file_name = f"{image_id:06d}.jpg"
        if not cv2.imwrite(str(out_dir / IMAGES_DIR / file_name), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise DatasetError(f"could not write image {out_dir / IMAGES_DIR / file_name}")
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        if rate_hz is not None:
            images[-1].update(video_id=1, frame_index=image_id - 1,
                              stamp_ns=round((image_id - 1) * 1_000_000_000 / rate_hz))
        for item in objects:
            x0, y0, x1, y1 = item.box
            annotation = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": item.category_id,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": item.area,
                "iscrowd": 0,
            }
            if rate_hz is not None:
                annotation["track_id"] = item.track_id
            annotations.append(annotation)
    coco = {
        "info": {"description": description},
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
    }
    # Written last and atomically: a folder with an annotations file is a complete dataset.
    temporary = out_dir / (ANNOTATIONS_FILE + ".tmp")
    temporary.write_text(json.dumps(coco))
    os.replace(temporary, out_dir / ANNOTATIONS_FILE)
    return coco


def synthesize(out_dir, count, *, seed=0, width=320, height=320, video=False, traffic=False,
               rate_hz=DEFAULT_VIDEO_RATE_HZ):
    """Write ``count`` still scenes (or, with ``video``, consecutive video frames at ``rate_hz``) of
    width x height pixels as a COCO dataset in ``out_dir``; returns the COCO dictionary that was written.

    traffic: the video's objects cross the picture and leave, and others come (SceneVideo's traffic).
    """
    if count < 1:
        raise ConfigError(f"the number of images/frames must be at least 1, got {count}")
    if width < 32 or height < 32:
        raise ConfigError(f"images must be at least 32x32 pixels, got {width}x{height}")
    if video:
        if not rate_hz > 0:
            raise ConfigError(f"the video rate must be positive, got {rate_hz} Hz")
        scenes = SceneVideo(width, height, seed, traffic=traffic)
        pictures = (scenes.frame(index) for index in range(count))
        description = f"detr_ros synthetic video{' with traffic' if traffic else ''}, seed {seed}, {count} frames"
        return write_dataset(out_dir, pictures, width, height, description, rate_hz)
    generator = SceneGenerator(width, height, seed)
    pictures = (generator.image(index) for index in range(count))
    description = f"detr_ros synthetic scenes, seed {seed}, {count} images"
    return write_dataset(out_dir, pictures, width, height, description)
