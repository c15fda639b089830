"""COCO-format detection datasets: an annotations JSON and a folder of images.

The dataset's category ids (any integers, with gaps) are mapped to contiguous training
ids 0..C-1 in ascending id order, or in the order of an explicit ``category_ids`` list
(fine-tuning or evaluating an existing model keeps that model's mapping). The mapping
travels with every checkpoint; nothing assumes ``num_classes = max_id + 1``.

Images without objects are valid. Boxes with no area, or lying wholly outside their
image, are dropped and counted in ``num_degenerate_boxes``. Crowd annotations are not training
targets (as in DETR). A missing image, a malformed annotations file or an annotation
naming a category that is not in the mapping raises ``DatasetError`` naming the file
and the entry.

A sample is looked up with a ``SampleKey`` (index, augmentation seed, output size) so
that the augmentation of every sample is a pure function of the key: training order and
augmentation replay exactly after ``--resume`` and on any number of data workers.
"""

import bisect
import json
import math
from pathlib import Path
from typing import NamedTuple

import cv2
import torch
from torchvision import tv_tensors

from detr_ros.errors import DatasetError
from detr_ros.modeling.box_ops import box_xyxy_to_cxcywh
from detr_ros.runtime.encoded_images import EncodedImageError, read_image_file

ANNOTATIONS_FILE = "annotations.json"
IMAGES_DIR = "images"


class SampleKey(NamedTuple):
    index: int
    seed: int  # augmentation seed
    size: tuple  # (height, width) the image is resized to


def _entry_error(path, where, problem):
    return DatasetError(f"{path}: {where}: {problem}")


def _number_list(value, length):
    return (isinstance(value, list) and len(value) == length
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))


def load_coco_json(path):
    """Read and check the structure of a COCO annotations file; returns the parsed dict."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"annotations file not found: {path}")
    try:
        coco = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(coco, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'images', 'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise DatasetError(f"{path}: expected a list under '{key}', found {type(coco.get(key)).__name__}")
    for i, image in enumerate(coco["images"]):
        if not (isinstance(image, dict) and isinstance(image.get("id"), int)
                and isinstance(image.get("file_name"), str)):
            raise _entry_error(path, f"images[{i}]", f"expected {{'id': int, 'file_name': str, ...}}, got {image!r}")
    for i, category in enumerate(coco["categories"]):
        if not (isinstance(category, dict) and isinstance(category.get("id"), int)
                and isinstance(category.get("name"), str)):
            raise _entry_error(path, f"categories[{i}]", f"expected {{'id': int, 'name': str}}, got {category!r}")
    image_ids = {image["id"] for image in coco["images"]}
    for i, annotation in enumerate(coco["annotations"]):
        where = f"annotations[{i}]" + (f" (id {annotation['id']})" if isinstance(annotation, dict) and "id" in annotation else "")
        if not isinstance(annotation, dict):
            raise _entry_error(path, where, f"expected an object, got {annotation!r}")
        if not _number_list(annotation.get("bbox"), 4):
            raise _entry_error(path, where, f"'bbox' must be 4 finite numbers [x, y, w, h], got {annotation.get('bbox')!r}")
        if not isinstance(annotation.get("category_id"), int):
            raise _entry_error(path, where, f"'category_id' must be an integer, got {annotation.get('category_id')!r}")
        if annotation.get("image_id") not in image_ids:
            raise _entry_error(path, where, f"'image_id' {annotation.get('image_id')!r} is not the id of any image")
    return coco


class CocoDetection(torch.utils.data.Dataset):
    """Images and targets of a COCO-format dataset.

    ``dataset[key]`` with a SampleKey returns (image [3, H, W] float in [0, 1], target) where
    target = {"labels": LongTensor[n] training ids, "boxes": FloatTensor[n, 4] normalised
    cxcywh, "image_id": int, "orig_size": LongTensor[2] (W, H) of the file}.
    augment: a torchvision.transforms.v2 callable (image, target) -> (image, target) or None;
    finish: callable (size) -> v2 transform resizing to size and sanitising boxes.
    """

    def __init__(self, annotation_file, image_dir, *, augment=None, finish=None, category_ids=None):
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        self.augment = augment
        self.finish = finish
        coco = load_coco_json(self.annotation_file)
        names = {c["id"]: c["name"] for c in coco["categories"]}
        self.category_ids = sorted(names) if category_ids is None else list(category_ids)
        self.class_names = [names.get(cid, str(cid)) for cid in self.category_ids]
        self.label_of_category = {cid: label for label, cid in enumerate(self.category_ids)}
        self.images = list(coco["images"])
        self._targets = {image["id"]: [] for image in self.images}
        self.num_degenerate_boxes = 0
        image_sizes = {image["id"]: (image["width"], image["height"]) if "width" in image and "height" in image else None
                       for image in self.images}
        for i, annotation in enumerate(coco["annotations"]):
            if annotation["category_id"] not in self.label_of_category:
                raise _entry_error(
                    self.annotation_file, f"annotations[{i}] (id {annotation.get('id')})",
                    f"category_id {annotation['category_id']} is not one of the categories {self.category_ids}")
            if annotation.get("iscrowd", 0):
                continue
            x, y, w, h = annotation["bbox"]
            size = image_sizes[annotation["image_id"]]
            if w <= 0 or h <= 0 or (size is not None and (x >= size[0] or y >= size[1] or x + w <= 0 or y + h <= 0)):
                self.num_degenerate_boxes += 1
                continue
            self._targets[annotation["image_id"]].append(
                (self.label_of_category[annotation["category_id"]], (x, y, x + w, y + h)))
        for i, image in enumerate(self.images):
            if not (self.image_dir / image["file_name"]).is_file():
                raise _entry_error(self.annotation_file, f"images[{i}] (id {image['id']})",
                                   f"image file not found: {self.image_dir / image['file_name']}")

    @classmethod
    def from_folder(cls, folder, **kwargs):
        """A dataset laid out as ``detr-ros synth`` writes it: FOLDER/annotations.json, FOLDER/images/."""
        folder = Path(folder)
        return cls(folder / ANNOTATIONS_FILE, folder / IMAGES_DIR, **kwargs)

    @property
    def num_classes(self):
        return len(self.category_ids)

    def __len__(self):
        return len(self.images)

    def read_image(self, index):
        """The image file as uint8 RGB [3, H, W]."""
        entry = self.images[index]
        path = self.image_dir / entry["file_name"]
        try:
            bgr = read_image_file(path)
        except EncodedImageError as error:
            raise _entry_error(self.annotation_file, f"images[{index}] (id {entry['id']})", str(error)) from None
        return torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).contiguous()

    def raw_target(self, index, height, width):
        """Boxes in pixels clipped to the image, degenerate ones dropped: (labels [n], boxes xyxy [n, 4])."""
        objects = self._targets[self.images[index]["id"]]
        labels = torch.tensor([label for label, _ in objects], dtype=torch.int64)
        boxes = torch.tensor([box for _, box in objects], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return labels[keep], boxes[keep]

    def __getitem__(self, key):
        key = SampleKey(*key)
        image = self.read_image(key.index)
        height, width = image.shape[-2:]
        labels, boxes = self.raw_target(key.index, height, width)
        image = tv_tensors.Image(image)
        target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
                  "labels": labels}
        # Augmentations draw from torch's global generator: fork it so that they depend on the
        # key alone and leave the training process's random stream untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(key.seed)
            if self.augment is not None:
                image, target = self.augment(image, target)
            if self.finish is not None:
                image, target = self.finish(key.size)(image, target)
        out_h, out_w = image.shape[-2:]
        scale = torch.tensor([out_w, out_h, out_w, out_h], dtype=torch.float32)
        return image.as_subclass(torch.Tensor).float() / 255.0, {
            "labels": target["labels"],
            "boxes": box_xyxy_to_cxcywh(target["boxes"].as_subclass(torch.Tensor).float() / scale),
            "image_id": self.images[key.index]["id"],
            "orig_size": torch.tensor([width, height], dtype=torch.int64),
        }


class DatasetFolders(torch.utils.data.ConcatDataset):
    """Several dataset folders as one (torch's ConcatDataset of their CocoDetection), with the first folder's
    category mapping (or ``category_ids``), which every other folder's categories must fit under the same
    names.

    ``dataset[key]`` is CocoDetection's, ``key.index`` counting across the folders in order; other
    keyword arguments go to every folder's CocoDetection.
    """

    def __init__(self, folders, *, category_ids=None, **kwargs):
        if not folders:
            raise DatasetError("no dataset folder given")
        first = CocoDetection.from_folder(folders[0], category_ids=category_ids, **kwargs)
        super().__init__([first] + [CocoDetection.from_folder(folder, category_ids=first.category_ids, **kwargs)
                                    for folder in folders[1:]])
        for part in self.datasets[1:]:
            if part.class_names != first.class_names:
                raise DatasetError(f"{part.annotation_file}: categories {dict(zip(part.category_ids, part.class_names))} "
                                   f"differ from {first.annotation_file}'s "
                                   f"{dict(zip(first.category_ids, first.class_names))}")
        self.category_ids, self.class_names = first.category_ids, first.class_names

    @property
    def num_classes(self):
        return len(self.category_ids)

    @property
    def num_degenerate_boxes(self):
        return sum(part.num_degenerate_boxes for part in self.datasets)

    def __getitem__(self, key):
        # ConcatDataset's own lookup takes a plain index; a SampleKey carries its index among others.
        key = SampleKey(*key)
        which = bisect.bisect_right(self.cumulative_sizes, key.index)
        start = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][key._replace(index=key.index - start)]


def collate(batch):
    """[(image, target)] -> (images [B, 3, H, W], list of targets). All images share one size."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
