"""COCO datasets: id mapping, empty images, degenerate boxes, named errors, augmentation keeps boxes on objects."""

import json

import cv2
import numpy as np
import pytest
import torch

from detr_ros.errors import DatasetError
from detr_ros.training.dataset import CocoDetection, DatasetFolders, SampleKey
from detr_ros.training.transforms import AugmentationConfig, resize_and_sanitize, train_augmentations
from robot.hostile_images import png_header_claiming


def _write_dataset(folder, annotations, images=None, categories=None):
    """A small dataset: 64x48 images with a bright rectangle wherever an annotation says."""
    images = images if images is not None else [{"id": 10, "file_name": "a.png", "width": 64, "height": 48},
                                                {"id": 11, "file_name": "b.png", "width": 64, "height": 48}]
    categories = categories if categories is not None else [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}]
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for image in images:
        pixels = np.zeros((48, 64, 3), np.uint8)
        for annotation in annotations:
            try:
                x, y, w, h = (int(v) for v in annotation["bbox"])
            except (TypeError, ValueError):
                continue  # a malformed entry under test
            if annotation["image_id"] == image["id"]:
                pixels[y:y + max(h, 0), x:x + max(w, 0)] = 255
        cv2.imwrite(str(folder / "images" / image["file_name"]), pixels)
    (folder / "annotations.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    return folder


ANNOTATIONS = [
    {"id": 1, "image_id": 10, "category_id": 7, "bbox": [4, 4, 20, 10]},
    {"id": 2, "image_id": 10, "category_id": 3, "bbox": [30, 20, 16, 16]},
    {"id": 3, "image_id": 10, "category_id": 3, "bbox": [5, 5, 0, 8]},  # no width
    {"id": 4, "image_id": 10, "category_id": 7, "bbox": [70, 5, 4, 4]},  # right of the 64-pixel image
]


def test_category_ids_map_to_contiguous_training_ids_and_back(tmp_path):
    dataset = CocoDetection.from_folder(_write_dataset(tmp_path, ANNOTATIONS), finish=resize_and_sanitize)
    assert dataset.category_ids == [3, 7] and dataset.class_names == ["dog", "cat"]
    image, target = dataset[SampleKey(0, 0, (48, 64))]
    assert image.shape == (3, 48, 64) and image.dtype == torch.float32 and 0.0 <= image.min() <= image.max() <= 1.0
    assert [dataset.category_ids[label] for label in target["labels"].tolist()] == [7, 3]
    # Boxes: normalised cxcywh; the cat at [4, 4, 20, 10] pixels.
    assert torch.allclose(target["boxes"][0], torch.tensor([14 / 64, 9 / 48, 20 / 64, 10 / 48]))
    assert target["image_id"] == 10 and target["orig_size"].tolist() == [64, 48]
    # An explicit mapping (an existing model's) is kept as given.
    assert CocoDetection.from_folder(tmp_path, category_ids=[7, 3]).class_names == ["cat", "dog"]


def test_several_folders_are_one_dataset_with_the_first_folders_categories(tmp_path):
    first = _write_dataset(tmp_path / "scenes", ANNOTATIONS)
    # The second folder lists its categories the other way round and uses only one of them.
    second = _write_dataset(tmp_path / "video", [{"id": 1, "image_id": 5, "category_id": 7, "bbox": [10, 12, 30, 20]}],
                            images=[{"id": 5, "file_name": "f.png", "width": 64, "height": 48}],
                            categories=[{"id": 3, "name": "dog"}, {"id": 7, "name": "cat"}])
    dataset = DatasetFolders([first, second], finish=resize_and_sanitize)
    assert len(dataset) == 3 and dataset.num_classes == 2 and dataset.class_names == ["dog", "cat"]
    assert dataset.num_degenerate_boxes == 2
    assert dataset[SampleKey(1, 0, (48, 64))][1]["image_id"] == 11
    image, target = dataset[SampleKey(2, 0, (48, 64))]
    assert target["image_id"] == 5 and [dataset.category_ids[label] for label in target["labels"].tolist()] == [7]
    assert torch.allclose(target["boxes"][0], torch.tensor([25 / 64, 22 / 48, 30 / 64, 20 / 48]))


def test_folders_whose_categories_differ_are_refused(tmp_path):
    first = _write_dataset(tmp_path / "scenes", ANNOTATIONS)
    renamed = _write_dataset(tmp_path / "other", [], categories=[{"id": 7, "name": "lion"}, {"id": 3, "name": "dog"}])
    with pytest.raises(DatasetError, match=r"other/annotations.json: categories \{3: 'dog', 7: 'lion'\} differ"):
        DatasetFolders([first, renamed])
    extra = _write_dataset(tmp_path / "extra", [{"id": 1, "image_id": 10, "category_id": 5, "bbox": [1, 1, 5, 5]}],
                           categories=[{"id": 5, "name": "owl"}])
    with pytest.raises(DatasetError, match=r"extra/annotations.json: annotations\[0\] \(id 1\): category_id 5"):
        DatasetFolders([first, extra])


def test_images_without_objects_are_valid_and_degenerate_boxes_are_counted(tmp_path):
    dataset = CocoDetection.from_folder(_write_dataset(tmp_path, ANNOTATIONS), finish=resize_and_sanitize)
    assert dataset.num_degenerate_boxes == 2
    _, target = dataset[SampleKey(1, 0, (32, 32))]
    assert target["labels"].shape == (0,) and target["boxes"].shape == (0, 4)


def test_missing_image_names_file_and_entry(tmp_path):
    _write_dataset(tmp_path, ANNOTATIONS)
    (tmp_path / "images" / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"annotations\.json: images\[1\] \(id 11\): image file not found: .*b\.png"):
        CocoDetection.from_folder(tmp_path)


def test_unreadable_image_names_file_and_entry(tmp_path):
    _write_dataset(tmp_path, ANNOTATIONS)
    (tmp_path / "images" / "a.png").write_bytes(b"not a picture")
    dataset = CocoDetection.from_folder(tmp_path)
    with pytest.raises(DatasetError, match=r"images\[0\] \(id 10\): .*a\.png: not an image of a known format"):
        dataset[SampleKey(0, 0, (48, 64))]


def test_image_whose_header_claims_a_huge_size_is_refused_before_decoding(tmp_path):
    _write_dataset(tmp_path, ANNOTATIONS)
    (tmp_path / "images" / "a.png").write_bytes(png_header_claiming(40000, 40000))
    dataset = CocoDetection.from_folder(tmp_path)
    with pytest.raises(DatasetError, match=r"images\[0\] \(id 10\): .*a\.png: its header states 40000x40000"):
        dataset[SampleKey(0, 0, (48, 64))]


def test_broken_json_names_the_file(tmp_path):
    _write_dataset(tmp_path, ANNOTATIONS)
    text = (tmp_path / "annotations.json").read_text()
    (tmp_path / "annotations.json").write_text(text[: len(text) // 2])
    with pytest.raises(DatasetError, match=r"annotations\.json: not valid JSON"):
        CocoDetection.from_folder(tmp_path)


def test_unknown_category_names_the_annotation(tmp_path):
    _write_dataset(tmp_path, ANNOTATIONS + [{"id": 9, "image_id": 11, "category_id": 5, "bbox": [1, 1, 5, 5]}])
    with pytest.raises(DatasetError, match=r"annotations\[4\] \(id 9\): category_id 5 is not one of the categories \[3, 7\]"):
        CocoDetection.from_folder(tmp_path)


@pytest.mark.parametrize("bad, message", [
    ({"bbox": [1, 2, 3]}, r"'bbox' must be 4 finite numbers"),
    ({"bbox": [1, 2, "3", 4]}, r"'bbox' must be 4 finite numbers"),
    ({"category_id": "cat"}, r"'category_id' must be an integer"),
    ({"image_id": 99}, r"'image_id' 99 is not the id of any image"),
])
def test_malformed_annotation_names_the_entry(tmp_path, bad, message):
    _write_dataset(tmp_path, [ANNOTATIONS[0], {**ANNOTATIONS[1], **bad}])
    with pytest.raises(DatasetError, match=r"annotations\[1\] \(id 2\): " + message):
        CocoDetection.from_folder(tmp_path)


def test_missing_sections_are_named(tmp_path):
    _write_dataset(tmp_path, ANNOTATIONS)
    (tmp_path / "annotations.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DatasetError, match=r"expected a list under 'categories'"):
        CocoDetection.from_folder(tmp_path)


def test_augmentations_keep_boxes_on_their_objects(tmp_path):
    # Heavy augmentation, then check that every box still frames a bright object in the output image.
    dataset = CocoDetection.from_folder(
        _write_dataset(tmp_path, ANNOTATIONS[:2]), finish=resize_and_sanitize,
        augment=train_augmentations(AugmentationConfig(photometric_p=0.0, zoom_out_p=0.5, zoom_out_max=2.0,
                                                       iou_crop_p=0.5, flip_p=0.5)))
    flipped_or_moved = 0
    for seed in range(12):
        image, target = dataset[SampleKey(0, seed, (64, 64))]
        again, _ = dataset[SampleKey(0, seed, (64, 64))]
        assert torch.equal(image, again)  # the key alone decides the augmentation
        for cx, cy, w, h in target["boxes"].tolist():
            x0, x1 = int(round((cx - w / 2) * 64)), int(round((cx + w / 2) * 64))
            y0, y1 = int(round((cy - h / 2) * 64)), int(round((cy + h / 2) * 64))
            inside = image[:, y0:y1, x0:x1]
            assert inside.numel() and inside.mean() > 0.6, (seed, cx, cy, w, h)
        flipped_or_moved += not torch.allclose(target["boxes"][0], torch.tensor([14 / 64, 9 / 48, 20 / 64, 10 / 48]))
    assert flipped_or_moved > 0


def test_sampler_order_is_a_function_of_the_step_and_ranks_share_nothing():
    from itertools import islice

    from detr_ros.training.sampler import ResumableBatchSampler

    sizes = [(64, 64), (96, 96), (128, 128)]
    whole = list(islice(iter(ResumableBatchSampler(20, 3, sizes, seed=4)), 14))
    resumed_sampler = ResumableBatchSampler(20, 3, sizes, seed=4)
    resumed_sampler.start_at(9)
    assert list(islice(iter(resumed_sampler), 5)) == whole[9:]
    assert len({batch[0].size for batch in whole}) > 1  # multi-scale: sizes vary between batches...
    assert all(len({key.size for key in batch}) == 1 for batch in whole)  # ...never within one
    epoch = [key.index for batch in whole[:6] for key in batch]  # 20 // 3 = 6 full batches
    assert len(set(epoch)) == 18
    ranks = [ResumableBatchSampler(20, 2, sizes, seed=4, rank=r, world_size=2) for r in (0, 1)]
    first_epoch = [{key.index for batch in islice(iter(s), 5) for key in batch} for s in ranks]
    assert not first_epoch[0] & first_epoch[1] and len(first_epoch[0] | first_epoch[1]) == 20
