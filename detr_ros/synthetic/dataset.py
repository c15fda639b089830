"""Synthetic scenes written as a COCO-format dataset: ``OUT/annotations.json`` and ``OUT/images/``.

``synthesize`` writes independent still scenes, or consecutive frames of one synthetic video;
a held-out split is the same call with another seed.
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


def coco_categories():
    return [{"id": c.category_id, "name": c.name, "supercategory": "shape"} for c in CLASSES]


def write_dataset(out_dir, pictures, width, height, description):
    """Write ``pictures`` (an iterable of (bgr, annotations)) as a COCO dataset in ``out_dir``.

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
        for item in objects:
            x0, y0, x1, y1 = item.box
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": item.category_id,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": item.area,
                "iscrowd": 0,
            })
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


def synthesize(out_dir, count, *, seed=0, width=320, height=320, video=False):
    """Write ``count`` still scenes (or, with ``video``, consecutive video frames) of width x height
    pixels as a COCO dataset in ``out_dir``; returns the COCO dictionary that was written."""
    if count < 1:
        raise ConfigError(f"the number of images/frames must be at least 1, got {count}")
    if width < 32 or height < 32:
        raise ConfigError(f"images must be at least 32x32 pixels, got {width}x{height}")
    if video:
        scenes = SceneVideo(width, height, seed)
        pictures = (scenes.frame(index) for index in range(count))
        description = f"detr_ros synthetic video, seed {seed}, {count} frames"
    else:
        generator = SceneGenerator(width, height, seed)
        pictures = (generator.image(index) for index in range(count))
        description = f"detr_ros synthetic scenes, seed {seed}, {count} images"
    return write_dataset(out_dir, pictures, width, height, description)
