"""``detr-ros synth OUT --images N --seed S [--size WxH] [--video FRAMES]``.

Writes a COCO-format dataset: ``OUT/annotations.json`` and ``OUT/images/``. With
``--images`` the pictures are independent still scenes; with ``--video`` they are
consecutive frames of one synthetic video. A held-out split is the same command with
another ``--seed``.
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


def parse_size(text):
    """'WxH' -> (width, height)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size: expected WIDTHxHEIGHT like 320x320, got {text!r}") from None
    if width < 32 or height < 32:
        raise ConfigError(f"--size: images must be at least 32x32 pixels, got {text!r}")
    return width, height


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


def add_arguments(parser):
    parser.add_argument("out", help="output folder (created): annotations.json and images/")
    parser.add_argument("--images", type=int, help="number of independent still scenes")
    parser.add_argument("--video", type=int, metavar="FRAMES", help="number of consecutive video frames instead")
    parser.add_argument("--seed", type=int, default=0, help="random seed; use another seed for a held-out split")
    parser.add_argument("--size", default="320x320", help="image size WIDTHxHEIGHT (default 320x320)")


def run(args):
    width, height = parse_size(args.size)
    if (args.images is None) == (args.video is None):
        raise ConfigError("give exactly one of --images N or --video FRAMES")
    count = args.images if args.images is not None else args.video
    if count < 1:
        raise ConfigError(f"the number of images/frames must be at least 1, got {count}")
    if args.video is not None:
        video = SceneVideo(width, height, args.seed)
        pictures = (video.frame(index) for index in range(count))
        description = f"detr_ros synthetic video, seed {args.seed}, {count} frames"
    else:
        generator = SceneGenerator(width, height, args.seed)
        pictures = (generator.image(index) for index in range(count))
        description = f"detr_ros synthetic scenes, seed {args.seed}, {count} images"
    coco = write_dataset(args.out, pictures, width, height, description)
    print(f"wrote {len(coco['images'])} images with {len(coco['annotations'])} objects "
          f"of {len(CLASSES)} classes to {args.out}")
    return 0
