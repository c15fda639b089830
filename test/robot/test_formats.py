"""Each known model format, exported by its own upstream, is recognised, fed and decoded as upstream does.

The files in data/formats/ were exported by each upstream's own code (random weights, tiny widths;
the make_*.py beside them say which release), and the JSON beside each holds the detections that
upstream's own inference code found on a committed synthetic scene. The Detector must find the
same detections, as sets:

- both sides run the same float32 graph in ONNX Runtime on the same pixels. What differs is the
  input scaling (x / 255 against x * (1/255), one float32 rounding per pixel), the mapping of boxes
  back to source pixels, the fixture's rounding (1e-4 px, 1e-7) and, on another CPU, the kernels'
  summation order: float32 rounding, not a difference of method. Scores therefore match within
  1e-5 (about 100 float32 steps at 1) and boxes within 1e-3 px (about 16 steps at 640 px); a wrong
  resize, colour order, normalisation or box convention moves them by whole pixels and tenths;
- the upstream's threshold lies in a gap between scores (see the make scripts), so rounding cannot
  move a detection across it.
"""

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from detr_ros.errors import ConfigError, ModelFileError
from detr_ros.runtime import Detector
from detr_ros.runtime.preprocess import NORMALIZATIONS, Preprocessor

DATA = Path(__file__).resolve().parent / "data" / "formats"
SCORE_TOLERANCE = 1e-5
BOX_TOLERANCE_PX = 1e-3
GOLDEN = {  # fixture -> (the format it must be recognised as, the Detector options its user must give)
    "ultralytics_rtdetr_v8_3": ("ultralytics_rtdetr", {}),
    "ultralytics_rtdetr_v8_4": ("ultralytics_rtdetr_topk", {}),
    "yolo26_end2end": ("yolo_end2end", {}),
    "rfdetr_nano": ("rfdetr", {}),
    "rtdetrv2": ("official", {}),
    "dfine": ("official", {}),
    "deim": ("official", {}),
    # DEIMv2's S to X models take ImageNet mean/std, which neither their signature nor their file says.
    "deimv2_s": ("official", {"normalization": "imagenet"}),
    "rtdetrv4_s": ("official", {}),
}


def golden(name):
    return json.loads((DATA / f"{name}.json").read_text())


def unmatched(expected, found, score_tolerance=SCORE_TOLERANCE, box_tolerance=BOX_TOLERANCE_PX):
    """Detections of ``expected`` with no partner in ``found`` (same class, score and box within the
    tolerances), each partner used once; found: Detections, or anything with their boxes, scores and
    class_ids. The Detector clips boxes to the image, as Ultralytics does and the official inference
    scripts do not: expected boxes are clipped too."""
    height, width = cv2.imread(str(DATA / expected["image"])).shape[:2]
    boxes = np.clip(expected["boxes"], 0, [width, height, width, height])
    free = list(range(len(found.scores)))
    missing = []
    for box, score, class_id in zip(boxes, expected["scores"], expected["class_ids"]):
        partner = next((i for i in free if found.class_ids[i] == class_id
                        and abs(found.scores[i] - score) <= score_tolerance
                        and np.abs(found.boxes[i] - box).max() <= box_tolerance), None)
        if partner is None:
            missing.append((class_id, score, box))
        else:
            free.remove(partner)
    return missing


def detect_as_upstream(path, record, cache_dir, **options):
    """The Detector at the upstream's threshold, keeping every detection as upstream does."""
    detector = Detector(path, cache_dir=cache_dir, score_threshold=record["score_threshold"], duplicate_iou=1.0,
                        max_detections=300, **options)
    return detector, detector.detect(cv2.imread(str(DATA / record["image"])), "bgr")


def with_metadata(source, target, drop=(), add=None):
    """Copy of the ONNX file ``source`` at ``target`` with metadata_props entries dropped (by key) or added.

    The robot layers have no onnx package, so the entries are edited in the protobuf wire format:
    ModelProto field 14 holds each entry as a message of key (field 1) and value (field 2)."""
    data = source.read_bytes()
    kept, position = bytearray(), 0
    while position < len(data):
        start = position
        tag, position = _varint(data, position)
        kind = tag & 7
        if kind == 0:
            _, position = _varint(data, position)
        elif kind == 2:
            length, position = _varint(data, position)
            payload, position = data[position:position + length], position + length
            if tag >> 3 == 14 and _entry_key(payload) in drop:
                continue
        else:
            position += {1: 8, 5: 4}[kind]
        kept += data[start:position]
    for key, value in (add or {}).items():
        entry = _field(1, key.encode()) + _field(2, value.encode())
        kept += _field(14, entry)
    target.write_bytes(bytes(kept))
    return target


def _varint(data, position):
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, position


def _encode_varint(value):
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _field(number, payload):
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _entry_key(payload):
    tag, position = _varint(payload, 0)
    length, position = _varint(payload, position)
    return payload[position:position + length].decode() if tag == (1 << 3 | 2) else None


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_upstream_export_gives_upstreams_detections(name, cache, caplog):
    record = golden(name)
    kind, options = GOLDEN[name]
    with caplog.at_level(logging.INFO, logger="detr_ros.runtime"):
        detector, found = detect_as_upstream(DATA / record["model"], record, cache, **options)
    assert detector.signature == kind
    assert f"format {kind}" in caplog.text
    assert len(record["scores"]) > 10, "a fixture with few detections proves little"
    assert len(found) == len(record["scores"])
    assert unmatched(record, found) == []


def test_ultralytics_8_3_file_without_its_version_is_refused_until_model_format_says(cache, tmp_path):
    """[N,300,6] is a 2-class RT-DETR to 8.3, the top-K layout to 8.4 and an end-to-end YOLO alike."""
    record = golden("ultralytics_rtdetr_v8_3")
    stripped = with_metadata(DATA / record["model"], tmp_path / "no_version.onnx", drop={"version"})
    with pytest.raises(ModelFileError) as error:
        Detector(stripped, cache_dir=cache)
    message = str(error.value)
    for candidate in ("ultralytics_rtdetr", "ultralytics_rtdetr_topk", "yolo_end2end"):
        assert f"'{candidate}'" in message
    assert "model_format=" in message and str(stripped) in message
    _, found = detect_as_upstream(stripped, record, cache, model_format="ultralytics_rtdetr")
    assert unmatched(record, found) == []


def test_ultralytics_8_4_file_whose_metadata_says_nothing_is_ambiguous(cache, tmp_path):
    record = golden("ultralytics_rtdetr_v8_4")
    stripped = with_metadata(DATA / record["model"], tmp_path / "silent.onnx",
                             drop={"version", "head", "end2end", "description"})
    with pytest.raises(ModelFileError, match="cannot tell which format it is.*model_format="):
        Detector(stripped, cache_dir=cache)
    _, found = detect_as_upstream(stripped, record, cache, model_format="ultralytics_rtdetr_topk")
    assert unmatched(record, found) == []


def test_deimv2_s_needs_its_normalization_named(cache):
    record = golden("deimv2_s")
    detector, found = detect_as_upstream(DATA / record["model"], record, cache)
    assert detector.metadata.normalization == "none"  # the official signature's default, right for Atto to N
    assert unmatched(record, found) != []


def test_8_4_file_is_read_by_its_version_not_its_shape(cache):
    """Its 2 class names and [N,300,6] output also fit the 8.3 layout; its version says which."""
    record = golden("ultralytics_rtdetr_v8_4")
    detector, _ = detect_as_upstream(DATA / record["model"], record, cache)
    assert detector.signature == "ultralytics_rtdetr_topk" and detector.class_names == ["0", "1"]


def test_model_format_must_fit_the_graph(cache):
    with pytest.raises(ModelFileError, match="model_format='rfdetr' but it does not have .*outputs dets, labels"):
        Detector(DATA / "reshape_64x64.onnx", cache_dir=cache, model_format="rfdetr")
    with pytest.raises(ConfigError, match="model_format='detr', expected one of .*'official'"):
        Detector(DATA / "reshape_64x64.onnx", cache_dir=cache, model_format="detr")


def test_graph_whose_output_cannot_be_detections_is_refused(cache):
    with pytest.raises(ModelFileError) as error:
        Detector(DATA / "reshape_64x64.onnx", cache_dir=cache)
    message = str(error.value)
    assert "no Ultralytics metadata" in message and "output0 float [1,3,4096]" in message
    assert "model_format='ultralytics_rtdetr'" in message


def test_yolo_grid_that_needs_nms_is_refused_by_its_metadata(cache, tmp_path):
    record = golden("yolo26_end2end")
    grid = with_metadata(DATA / record["model"], tmp_path / "grid.onnx", drop={"end2end"}, add={"end2end": "False"})
    with pytest.raises(ModelFileError, match="not exported end-to-end needs NMS.*nms=False"):
        Detector(grid, cache_dir=cache)


def test_preparation_options_are_checked_and_logged(cache, caplog):
    record = golden("rfdetr_nano")
    path = DATA / record["model"]
    with pytest.raises(ConfigError, match="normalization='imagenet_'"):
        Detector(path, cache_dir=cache, normalization="imagenet_")
    with pytest.raises(ConfigError, match="resize_mode='crop'"):
        Detector(path, cache_dir=cache, resize_mode="crop")
    with caplog.at_level(logging.INFO, logger="detr_ros.runtime"):
        detector, found = detect_as_upstream(path, record, cache, resize_mode="letterbox", normalization="none")
    assert "letterbox (option), normalization none (option)" in caplog.text
    assert (detector.metadata.resize_mode, detector.metadata.normalization) == ("letterbox", "none")
    assert unmatched(record, found) != []  # fed otherwise than RF-DETR feeds it, it answers otherwise


def test_class_names_from_the_file_a_labels_file_or_coco(cache, tmp_path, caplog):
    named = Detector(DATA / "yolo26_end2end.onnx", cache_dir=cache)  # a model built from its yaml: names "0".."79"
    assert named.class_names == [str(i) for i in range(80)]
    rfdetr = DATA / "rfdetr_nano.onnx"
    assert Detector(rfdetr, cache_dir=cache).class_names == ["class_0", "class_1"]
    labels = tmp_path / "labels.txt"
    labels.write_text("cone\nbarrel\n")
    assert Detector(rfdetr, cache_dir=cache, labels_path=labels).class_names == ["cone", "barrel"]
    labels.write_text("cone\n")
    with pytest.raises(ConfigError, match="1 class names in labels file .* with 2 classes"):
        Detector(rfdetr, cache_dir=cache, labels_path=labels)
    with caplog.at_level(logging.INFO, logger="detr_ros.runtime"):
        coco80 = Detector(DATA / "reshape_coco80.onnx", cache_dir=cache, model_format="ultralytics_rtdetr")
        coco91 = Detector(DATA / "split_coco91.onnx", cache_dir=cache)
    assert "COCO's 80 names" in caplog.text and "COCO names by category id" in caplog.text
    assert coco80.class_names[0] == "person" and coco80.category_ids[:3] == [1, 2, 3] and len(coco80.class_names) == 80
    assert coco91.signature == "rfdetr" and len(coco91.class_names) == 91
    assert [coco91.class_names[i] for i in (1, 12, 90)] == ["person", "class_12", "toothbrush"]
    assert coco91.category_ids == list(range(91))


def test_fixture_files_are_small():
    """Each fixture at most 3 MB, all of them under 15 MB: test data travels with every clone."""
    sizes = {path.name: path.stat().st_size for path in DATA.iterdir()}
    assert max(sizes.values()) <= 3_000_000, sizes
    assert sum(sizes.values()) <= 15_000_000, sizes


def test_imagenet_statistics_follow_the_models_colour_order():
    """(pixel / 255 - mean) / std per channel, the mean and std of R, G and B wherever the model wants them."""
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8)
    slots = {}
    for order in ("rgb", "bgr"):
        slots[order] = np.empty((3, 8, 8), np.float32)
        Preprocessor((8, 8), "stretch", order, 1 / 255, "imagenet").fill(slots[order], image, "bgr", {})
    mean, std = NORMALIZATIONS["imagenet"]
    expected_red = (image[..., 2] / 255 - mean[0]) / std[0]
    np.testing.assert_allclose(slots["rgb"][0], expected_red, atol=1e-6)
    np.testing.assert_allclose(slots["bgr"][2], expected_red, atol=1e-6)
