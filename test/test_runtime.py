"""The ONNX Runtime detector on graphs the project did not export: official and Ultralytics signatures.

The graphs are small torch modules exported with plain torch.onnx.export. They "detect" the one
bright rectangle in an image, exactly, so that the runtime's pre-processing and box mapping can be
checked to the pixel against a rectangle drawn at known coordinates.
"""

import json
import logging
import subprocess
import sys
import threading

import numpy as np
import onnx
import pytest
import torch

from detr_ros.errors import ConfigError, ModelFileError
from detr_ros.runtime import Detector
from detr_ros.runtime.detections import select
from detr_ros.runtime.detector import session_options
from detr_ros.runtime.preprocess import Placement, placement_for

NUM_ULTRALYTICS_QUERIES = 300
# What Ultralytics 8.3 writes into an RT-DETR export and the runtime reads: without it a [N,300,6]
# output could as well be 8.4's top-K layout or an end-to-end YOLO.
ULTRALYTICS_8_3 = {"version": "8.3.253", "description": "Ultralytics rtdetr-l model", "task": "detect"}


def bright_box(images):
    """images: [N,3,H,W] in [0,1] -> [N,4] normalised xyxy of the pixels brighter than 0.5."""
    mask = (images.mean(1) > 0.5).to(torch.float32)  # [N,H,W]
    height, width = images.shape[2], images.shape[3]
    columns = mask.amax(1)  # [N,W]
    rows = mask.amax(2)  # [N,H]
    x0 = columns.argmax(1).to(torch.float32)
    x1 = width - columns.flip(1).argmax(1).to(torch.float32)
    y0 = rows.argmax(1).to(torch.float32)
    y1 = height - rows.flip(1).argmax(1).to(torch.float32)
    return torch.stack([x0 / width, y0 / height, x1 / width, y1 / height], 1)


class OfficialBrightBox(torch.nn.Module):
    """Official signature: labels [N,2], boxes [N,2,4] in orig_target_sizes pixels, scores [N,2]."""

    def forward(self, images, orig_target_sizes):
        boxes = bright_box(images) * orig_target_sizes.to(torch.float32).repeat(1, 2)
        second = torch.zeros_like(boxes)
        labels = torch.tensor([[1, 0]]).expand(images.shape[0], 2)
        scores = torch.tensor([[0.9, 0.2]]).expand(images.shape[0], 2)
        return labels, torch.stack([boxes, second], 1), scores


class UltralyticsBrightBox(torch.nn.Module):
    """Ultralytics signature: [N, Q, 4 + 2] normalised cxcywh then class scores; query 0 is the box."""

    def forward(self, images):
        x0, y0, x1, y1 = bright_box(images).unbind(1)
        box = torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, 0.05 + 0 * x0, 0.8 + 0 * x0], 1)
        rest = torch.zeros(images.shape[0], NUM_ULTRALYTICS_QUERIES - 1, 6)
        return torch.cat([box.unsqueeze(1), rest], 1)


def export_graph(module, path, input_size, *, official=True, metadata=None, dynamic_batch=True):
    """Plain torch.onnx.export at opset 17, as a third party would; optional metadata_props."""
    height, width = input_size
    images = torch.rand(1, 3, height, width)
    if official:
        args, inputs, outputs = (images, torch.tensor([[width, height]])), ["images", "orig_target_sizes"], [
            "labels", "boxes", "scores"]
    else:
        args, inputs, outputs = (images,), ["images"], ["output0"]
    dynamic = {name: {0: "N"} for name in inputs + outputs} if dynamic_batch else None
    torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                      opset_version=17, dynamo=False)
    if metadata:
        model = onnx.load(str(path))
        for key, value in metadata.items():
            model.metadata_props.add(key=key, value=value)
        onnx.save(model, str(path))
    return path


def draw_box(height, width, box, channels=3):
    """A black uint8 image with a white rectangle covering box = (x0, y0, x1, y1) pixel edges."""
    image = np.zeros((height, width, channels) if channels > 1 else (height, width), np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = 255
    return image


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graphs")
    letterbox_meta = {"detr_ros.resize_mode": "letterbox", "detr_ros.class_names": json.dumps(["cone", "box"]),
                      "detr_ros.category_ids": json.dumps([7, 9])}
    return {
        "official_plain": export_graph(OfficialBrightBox(), folder / "official_plain.onnx", (160, 160)),
        "official_letterbox": export_graph(OfficialBrightBox(), folder / "official_letterbox.onnx", (160, 240),
                                           metadata=letterbox_meta),
        "ultralytics": export_graph(UltralyticsBrightBox(), folder / "ultralytics.onnx", (128, 128), official=False,
                                    metadata={**ULTRALYTICS_8_3, "names": "{0: 'person', 1: 'bicycle'}",
                                              "imgsz": "[128, 128]"}),
        "ultralytics_letterbox": export_graph(UltralyticsBrightBox(), folder / "ultralytics_letterbox.onnx",
                                              (128, 192), official=False, dynamic_batch=False,
                                              metadata={**ULTRALYTICS_8_3, "names": "{0: 'class_0', 1: 'class_1'}",
                                                        "detr_ros.resize_mode": "letterbox"}),
        "folder": folder,
    }


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache"


def test_runtime_import_leaves_torch_and_rclpy_out():
    code = ("import sys, detr_ros.runtime, detr_ros.runtime.providers; "
            "bad = [m for m in ('torch', 'rclpy') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_foreign_official_graph_uses_labels_file_and_declared_size(graphs, cache, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("person\ncar\n")
    detector = Detector(graphs["official_plain"], labels_path=labels, cache_dir=cache)
    assert detector.signature == "official"
    assert detector.input_size == (160, 160)
    assert detector.class_names == ["person", "car"]
    assert detector.metadata.resize_mode == "stretch"
    box = (40, 60, 200, 140)
    found = detector.detect(draw_box(240, 320, box))
    assert len(found) == 1  # the second output row scores 0.2, under the default threshold
    assert found.class_ids.tolist() == [1]
    assert found.scores[0] == pytest.approx(0.9)
    np.testing.assert_allclose(found.boxes[0], box, atol=1.0)


@pytest.mark.parametrize("image_size, box", [((480, 640), (100, 60, 420, 300)), ((300, 200), (20, 40, 180, 260))])
def test_letterbox_round_trip(graphs, cache, image_size, box):
    """A rectangle drawn at known pixels comes back at those pixels through a letterboxed canvas."""
    detector = Detector(graphs["official_letterbox"], cache_dir=cache)
    assert detector.metadata.resize_mode == "letterbox"
    assert detector.category_ids == [7, 9]
    height, width = image_size
    placement = placement_for(height, width, detector.input_size, "letterbox")
    assert placement.pad_x > 0 or placement.pad_y > 0
    found = detector.detect(draw_box(height, width, box), "rgb")
    # one canvas pixel is 1/scale source pixels: the resize can move an edge by at most that
    tolerance = 1.0 / min(placement.scale_x, placement.scale_y)
    np.testing.assert_allclose(found.boxes[0], box, atol=tolerance)


def test_ultralytics_graph_letterbox_fixed_batch(graphs, cache):
    detector = Detector(graphs["ultralytics_letterbox"], cache_dir=cache)
    assert detector.signature == "ultralytics_rtdetr"
    assert detector.class_names == ["class_0", "class_1"]
    boxes = [(10, 20, 90, 70), (30, 5, 60, 95), (0, 0, 50, 50)]
    images = [draw_box(100, 120, b) for b in boxes]
    found = detector.detect_batch(images, "bgr")  # the graph's batch is fixed at 1: three runs
    for detections, box in zip(found, boxes):
        assert detections.class_ids.tolist() == [1]
        assert detections.scores[0] == pytest.approx(0.8)
        np.testing.assert_allclose(detections.boxes[0], box, atol=1.0)


def test_ultralytics_graph_names_batch_and_colour_orders(graphs, cache):
    detector = Detector(graphs["ultralytics"], cache_dir=cache)
    assert detector.class_names == ["person", "bicycle"]
    box = (32, 16, 96, 112)
    bgr = draw_box(128, 128, box)
    images = [bgr, bgr[..., ::-1].copy(), draw_box(128, 128, box, channels=1),
              np.dstack([bgr, np.full((128, 128), 255, np.uint8)])]
    found = detector.detect_batch(images, ["bgr", "rgb", "gray", "bgra"])
    assert len(found) == 4
    for detections in found:
        np.testing.assert_allclose(detections.boxes[0], box, atol=0.5)


def test_thread_spinning_modes_are_onnxruntime_session_settings():
    def entry(mode, key):
        try:
            return session_options(2, thread_spinning=mode).get_session_config_entry(key)
        except RuntimeError:  # unset: onnxruntime's default
            return None

    allow, stop = "session.intra_op.allow_spinning", "session.force_spinning_stop"
    assert (entry("never", allow), entry("never", stop)) == ("0", None)
    assert (entry("while_running", allow), entry("while_running", stop)) == (None, "1")
    assert (entry("always", allow), entry("always", stop)) == (None, None)
    with pytest.raises(ConfigError, match="thread_spinning='sometimes', expected one of never, while_running, always"):
        session_options(2, thread_spinning="sometimes")


def test_same_class_duplicates_are_published_once():
    """Two boxes of one class on one object count once; other classes and lesser overlaps stay."""
    boxes = np.array([[10, 10, 110, 110], [12, 11, 110, 108], [10, 10, 110, 110], [60, 10, 160, 110],
                      [300, 300, 340, 340]], np.float32)
    scores = np.array([0.6, 0.9, 0.5, 0.7, 0.0], np.float32)
    labels = np.array([1, 1, 2, 1, 1])
    identity = Placement.identity(400, 400)

    def kept(**settings):
        found = select(boxes, scores, labels, identity, score_threshold=0.0, classes=None, max_detections=3,
                       **settings)
        return found.scores.tolist()

    # 0.6 repeats 0.9 (IoU 0.94, same class); 0.5 is another class; 0.7 overlaps 0.9 by 0.35.
    assert kept() == pytest.approx([0.9, 0.7, 0.5])  # the cap applies after suppression
    assert kept(duplicate_iou=1.0) == pytest.approx([0.9, 0.7, 0.6])
    assert kept(duplicate_iou=0.3) == pytest.approx([0.9, 0.5, 0.0])


def test_per_call_threshold_allow_list_and_cap(graphs, cache):
    detector = Detector(graphs["official_plain"], cache_dir=cache, score_threshold=0.1)
    image = draw_box(160, 160, (10, 10, 50, 50))
    assert len(detector.detect(image)) == 2
    assert detector.detect(image, classes=[0]).class_ids.tolist() == [0]
    assert detector.detect(image, max_detections=1).class_ids.tolist() == [1]
    assert len(detector.detect(image, score_threshold=0.95)) == 0
    timings = {}
    detector.detect(image, timings=timings)
    assert set(timings) == {"preprocess_s", "inference_s", "postprocess_s"}


def test_provider_fallback_runs_on_cpu_and_says_so(graphs, cache, caplog):
    with caplog.at_level(logging.INFO, logger="detr_ros.runtime"):
        detector = Detector(graphs["official_plain"], ("tensorrt", "cuda", "cpu"), cache_dir=cache, threads=1)
    assert detector.provider == "CPUExecutionProvider"
    line = [r.getMessage() for r in caplog.records if "running on" in r.getMessage()][-1]
    assert "running on CPUExecutionProvider" in line
    assert "tensorrt: not available" in line and "cuda: not available" in line
    with pytest.raises(ConfigError, match="none of .*cuda.* is available"):
        Detector(graphs["official_plain"], ("cuda",), cache_dir=cache)
    with pytest.raises(ConfigError, match="unknown provider 'openvinoo'"):
        Detector(graphs["official_plain"], ("openvinoo", "cpu"), cache_dir=cache)


def test_optimised_graph_is_cached_and_reused(graphs, cache):
    first = Detector(graphs["official_plain"], cache_dir=cache)
    cached = list((cache / "optimized").glob("*.onnx"))
    assert len(cached) == 1 and first.model_sha256[:16] in cached[0].name
    stamp = cached[0].stat().st_mtime_ns
    image = draw_box(90, 120, (5, 5, 60, 60))
    second = Detector(graphs["official_plain"], cache_dir=cache)
    assert cached[0].stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first.detect(image).boxes, second.detect(image).boxes)
    cached[0].write_bytes(b"damaged")
    third = Detector(graphs["official_plain"], cache_dir=cache)
    np.testing.assert_array_equal(third.detect(image).boxes, first.detect(image).boxes)
    assert cached[0].stat().st_size > len(b"damaged")


def test_unusable_cache_folder_only_turns_the_cache_off(graphs, tmp_path, caplog):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with caplog.at_level(logging.WARNING, logger="detr_ros.runtime"):
        detector = Detector(graphs["official_plain"], cache_dir=not_a_folder)
    assert "optimised-graph cache off" in caplog.text
    np.testing.assert_allclose(detector.detect(draw_box(160, 160, (10, 20, 90, 100))).boxes[0], (10, 20, 90, 100),
                               atol=1.0)


def test_concurrent_callers_get_their_own_results(graphs, cache):
    detector = Detector(graphs["ultralytics"], cache_dir=cache, threads=1)
    boxes = [(4 * i, 2 * i, 60 + 4 * i, 70 + 2 * i) for i in range(8)]
    errors, results = [], {}

    def worker(index):
        try:
            for _ in range(10):
                results[index] = detector.detect(draw_box(128, 128, boxes[index])).boxes[0]
                np.testing.assert_allclose(results[index], boxes[index], atol=0.5)
        except AssertionError as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(boxes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == len(boxes)


def test_bad_images_are_refused_clearly(graphs, cache):
    detector = Detector(graphs["official_plain"], cache_dir=cache)
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r"shape \(10, 10\) for color order 'bgr'"):
        detector.detect(np.zeros((10, 10), np.uint8), "bgr")
    with pytest.raises(ValueError, match="color order 'yuv'"):
        detector.detect(np.zeros((10, 10, 3), np.uint8), "yuv")


def test_bad_model_files_each_get_their_error(graphs, cache, tmp_path):
    good = graphs["official_plain"].read_bytes()
    cases = {
        "missing.onnx": (None, "does not exist"),
        "empty.onnx": (b"", "is empty"),
        "truncated.onnx": (good[: len(good) // 2], "onnxruntime cannot load it"),
        "text.onnx": (b"this is not a model\n" * 10, "onnxruntime cannot load it"),
        "checkpoint.pt": (b"PK\x03\x04" + b"\0" * 64, "zip archive"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ModelFileError, match=message) as error:
            Detector(path, cache_dir=cache)
        assert str(path) in str(error.value)
    with pytest.raises(ModelFileError, match="is not a file"):
        Detector(tmp_path, cache_dir=cache)


class TwoOutputs(torch.nn.Module):
    def forward(self, images):
        return images.mean((2, 3)), images.amax((2, 3))


class YoloLike(torch.nn.Module):
    """[N, 4 + 2, cells of the stride 8/16/32 maps]: a YOLOv8 head's layout."""

    def forward(self, images):
        cells = torch.cat([torch.nn.functional.avg_pool2d(images, s).flatten(2) for s in (8, 16, 32)], 2)
        return torch.cat([cells, cells], 1)


class ManyClasses(torch.nn.Module):
    """Ultralytics layout with more classes than queries (an Objects365-sized head): [N, 300, 4 + 400]."""

    def forward(self, images):
        return images.mean((1, 2, 3))[:, None, None].expand(-1, NUM_ULTRALYTICS_QUERIES, 404)


YOLO_GRID_8_4 = {"version": "8.4.190", "head": "Detect", "end2end": "False", "names": "{0: 'a', 1: 'b'}"}


@pytest.mark.parametrize("module, metadata, found", [
    (TwoOutputs(), {}, "pixels float [1,3,32,32]; outputs out0 float [1,3], out1"),
    (YoloLike(), YOLO_GRID_8_4, "a YOLO model not exported end-to-end needs NMS")])
def test_unknown_signature_says_what_was_found_and_expected(module, metadata, found, cache, tmp_path):
    path = tmp_path / "foreign.onnx"
    torch.onnx.export(module, (torch.rand(1, 3, 32, 32),), str(path), input_names=["pixels"],
                      output_names=["out0", "out1"][:2 if isinstance(module, TwoOutputs) else 1], opset_version=17,
                      dynamo=False)
    model = onnx.load(str(path))
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError) as error:
        Detector(path, cache_dir=cache)
    message = str(error.value)
    assert str(path) in message and found in message
    assert "known formats: official: inputs images" in message


def test_ultralytics_graph_with_more_classes_than_queries(cache, tmp_path):
    names = repr({i: f"c{i}" for i in range(400)})
    path = export_graph(ManyClasses(), tmp_path / "wide.onnx", (64, 64), official=False,
                        metadata={**ULTRALYTICS_8_3, "names": names})
    detector = Detector(path, cache_dir=cache)
    assert detector.signature == "ultralytics_rtdetr" and len(detector.class_names) == 400


def test_bad_metadata_and_settings(graphs, cache, tmp_path):
    path = export_graph(OfficialBrightBox(), tmp_path / "bad_meta.onnx", (64, 64),
                        metadata={"detr_ros.resize_mode": "crop"})
    with pytest.raises(ModelFileError, match="resize_mode='crop'"):
        Detector(path, cache_dir=cache)
    with pytest.raises(ConfigError, match="score_threshold=1.5"):
        Detector(graphs["official_plain"], cache_dir=cache, score_threshold=1.5)
    with pytest.raises(ConfigError, match="duplicate_iou=-0.1"):
        Detector(graphs["official_plain"], cache_dir=cache, duplicate_iou=-0.1)
    with pytest.raises(ConfigError, match="labels file .*missing.txt"):
        Detector(graphs["official_plain"], cache_dir=cache, labels_path=tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="input_size=\\[100, 100\\]"):
        Detector(graphs["official_plain"], cache_dir=cache, input_size=(100, 100))
