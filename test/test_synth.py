"""Synthetic scenes: deterministic, honest (scale range, occlusion, clutter), video with per-frame truth, COCO output."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from detr_ros.synthetic import CATEGORY_IDS, CLASS_NAMES, CLASSES, SceneGenerator, SceneVideo
from detr_ros.synthetic.shapes import render_object


@pytest.fixture(scope="module")
def scenes():
    generator = SceneGenerator(256, 192, seed=3)
    return [generator.image(i) for i in range(40)]


def test_same_seed_same_scene_and_other_seed_other_scene():
    first, first_objects = SceneGenerator(128, 96, seed=5).image(7)
    again, again_objects = SceneGenerator(128, 96, seed=5).image(7)
    other, _ = SceneGenerator(128, 96, seed=6).image(7)
    assert np.array_equal(first, again) and first_objects == again_objects
    assert first.shape == (96, 128, 3) and first.dtype == np.uint8
    assert np.abs(first.astype(int) - other.astype(int)).mean() > 10


def test_classes_are_many_and_their_ids_are_not_training_indices():
    assert len(CLASSES) >= 6 and len(set(CLASS_NAMES)) == len(CLASSES)
    assert list(CATEGORY_IDS) != list(range(len(CLASSES))) and len(set(CATEGORY_IDS)) == len(CATEGORY_IDS)


def test_classes_differ_in_greyscale_by_outline_and_pattern():
    # Same colours for every class: what is left to tell them apart must differ.
    grey_patches = []
    for object_class in CLASSES:
        rgb, alpha = render_object(object_class.name, 60.0, 1.0, 0.3, (200.0, 200.0, 200.0), (40.0, 40.0, 40.0))
        grey = (rgb.mean(axis=2) * alpha + 128.0 * (1 - alpha)) / 255.0
        grey_patches.append(cv2.resize(grey, (48, 48)))
    for i in range(len(CLASSES)):
        for j in range(i + 1, len(CLASSES)):
            assert np.abs(grey_patches[i] - grey_patches[j]).mean() > 0.05, (CLASS_NAMES[i], CLASS_NAMES[j])


def test_scenes_are_varied_and_honest(scenes):
    objects = [item for _, items in scenes for item in items]
    sides = np.array([max(o.box[2] - o.box[0], o.box[3] - o.box[1]) for o in objects])
    assert sides.min() <= 16 and sides.max() >= 70  # ~12 px up to about half of 192
    assert {o.class_index for o in objects} == set(range(len(CLASSES)))
    assert any(o.visible_fraction < 0.9 for o in objects)  # some are partly hidden
    assert min(o.visible_fraction for o in objects) >= 0.5 - 1e-9
    assert len({len(items) for _, items in scenes}) > 4  # the object count varies
    for image, items in scenes:
        for o in items:
            x0, y0, x1, y1 = o.box
            assert 0 <= x0 < x1 <= image.shape[1] and 0 <= y0 < y1 <= image.shape[0]
            assert o.category_id == CLASSES[o.class_index].category_id and o.name == CLASS_NAMES[o.class_index]


def test_objects_are_visible_where_their_boxes_are(scenes):
    # Inside a box the picture must have more structure (edges) than the scene's average.
    ratios = []
    for image, items in scenes:
        edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), 60, 150) > 0
        for o in items:
            x0, y0, x1, y1 = (int(v) for v in o.box)
            ratios.append(edges[y0:y1, x0:x1].mean() / max(edges.mean(), 1e-6))
    assert np.median(ratios) > 1.2


def test_video_moves_smoothly_with_ground_truth_per_frame():
    video = SceneVideo(320, 240, seed=4, num_objects=5)
    frames = [video.frame(i) for i in range(0, 30)]
    assert all(image.shape == (240, 320, 3) for image, _ in frames)
    image, items = video.frame(12)
    assert np.array_equal(image, frames[12][0]) and items == frames[12][1]  # random access
    assert np.array_equal(SceneVideo(320, 240, seed=4, num_objects=5).frame(29)[0], frames[29][0])
    steps = []
    for (_, before), (_, after) in zip(frames, frames[1:]):
        # Objects keep their identity (draw order); compare centres of those present in both frames.
        centres_before = {o.class_index: ((o.box[0] + o.box[2]) / 2, (o.box[1] + o.box[3]) / 2) for o in before}
        for o in after:
            if o.class_index in centres_before and sum(p.class_index == o.class_index for p in after) == 1:
                cx, cy = centres_before[o.class_index]
                steps.append(np.hypot((o.box[0] + o.box[2]) / 2 - cx, (o.box[1] + o.box[3]) / 2 - cy))
    steps = np.array(steps)
    assert len(steps) > 20 and np.median(steps) > 0.2 and np.percentile(steps, 90) < 6.0


def test_synth_command_writes_a_coco_dataset(tmp_path):
    out = tmp_path / "synth"
    result = subprocess.run([sys.executable, "-m", "detr_ros.cli", "synth", str(out), "--images", "6", "--seed", "2",
                             "--size", "96x64"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    coco = json.loads((out / "annotations.json").read_text())
    assert [c["id"] for c in coco["categories"]] == list(CATEGORY_IDS)
    assert len(coco["images"]) == 6 and coco["annotations"]
    for entry in coco["images"]:
        assert cv2.imread(str(out / "images" / entry["file_name"])).shape == (64, 96, 3)
    expected = [item for i in range(6) for item in SceneGenerator(96, 64, seed=2).image(i)[1]]
    assert [a["category_id"] for a in coco["annotations"]] == [o.category_id for o in expected]
    assert all(a["bbox"][2] > 0 and a["bbox"][3] > 0 and a["area"] > 0 for a in coco["annotations"])
    from pycocotools.coco import COCO

    assert len(COCO(str(out / "annotations.json")).getAnnIds()) == len(coco["annotations"])


def test_synth_video_and_bad_arguments(tmp_path):
    out = tmp_path / "video"
    ok = subprocess.run([sys.executable, "-m", "detr_ros.cli", "synth", str(out), "--video", "3", "--seed", "1",
                         "--size", "80x64"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == 3
    bad = subprocess.run([sys.executable, "-m", "detr_ros.cli", "synth", str(tmp_path / "x"), "--images", "2",
                          "--size", "80by64"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--size: expected WIDTHxHEIGHT" in bad.stderr
