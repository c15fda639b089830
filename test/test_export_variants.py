"""Export variants: INT8 static QDQ calibrated on a synthetic dataset, and DETR (softmax, dynamic size)."""

import json

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from detr_ros.cli import main
from detr_ros.errors import DatasetError
from detr_ros.export.onnx_export import deployed_detector, export
from detr_ros.export.verify import GraphRunner, compare
from detr_ros.export.quantize import (calibration_images, computed_from_non_finite, float_nodes, quantize_int8,
                                     replace_non_finite, upsampling_as_copies)
from detr_ros.runtime import Detector
from detr_ros.runtime.cpu import PORTABLE_INT8_WEIGHT_BITS, describe_cpu, int8_weight_bits
from detr_ros.runtime.detections import iou_matrix
from detr_ros.runtime.metadata import ModelMetadata
from detr_ros.runtime.model_file import file_digest
from detr_ros.synthetic import SceneGenerator
from test_export import CLASS_NAMES, TINY_RTDETR, make_checkpoint

TINY_DETR = dict(name="tiny_detr", architecture="detr", detr_backbone="resnet18", hidden_dim=32, nheads=4,
                 enc_layers=1, dec_layers=1, dim_feedforward=64, num_queries=10, num_classes=len(CLASS_NAMES),
                 input_size=[96, 128])


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("int8")
    assert main(["synth", str(folder / "calibration"), "--images", "6", "--size", "128x96", "--seed", "3"]) == 0
    checkpoint = make_checkpoint(folder / "tiny.pt", TINY_RTDETR)
    assert main(["export", str(checkpoint), str(folder / "tiny.onnx"), "--int8", "--calibration",
                 str(folder / "calibration"), "--calibration-images", "6"]) == 0
    return folder


def test_int8_file_is_separate_quantized_and_self_describing(int8_export):
    fp32, int8 = int8_export / "tiny.onnx", int8_export / "tiny.int8.onnx"
    assert fp32.is_file() and int8.is_file()
    model = onnx.load(str(int8))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    # the final box head keeps float weights
    float_weights = {init.name for init in model.graph.initializer if init.data_type == onnx.TensorProto.FLOAT}
    # (layers.0 only: the untrained last layers are all zeros, one shared initializer once deduplicated)
    head = [n for n in model.graph.node if "dec_bbox_head" in n.name and "layers.0" in n.name and n.op_type == "MatMul"]
    assert head and all(n.input[1] in float_weights for n in head)
    # as do the backbone's convolutions but for the two thinnest of its stem (3 -> 8 -> 8 channels at
    # this width), which int8 runs slower than float
    backbone = [n for n in model.graph.node if "/backbone/" in n.name and n.op_type == "Conv"]
    float_backbone = sorted(n.name for n in backbone if n.input[1] in float_weights)
    assert float_backbone == ["/model/backbone/conv1/conv1_1/conv/Conv", "/model/backbone/conv1/conv1_2/conv/Conv"]
    assert len(backbone) > 10
    # the decoder's value projections run on every map position, so they are int8 inside the float decoder
    values = [n for n in model.graph.node if "cross_attn/level_value_proj" in n.name and n.op_type == "Conv"]
    assert values and not any(set(n.input) & float_weights for n in values)
    # sizes are read off the int8 tensors: no map is dequantized only to learn its shape
    producers = {output: node.op_type for node in model.graph.node for output in node.output}
    shapes = [node for node in model.graph.node if node.op_type == "Shape"]
    assert shapes and all(producers.get(node.input[0]) != "DequantizeLinear" for node in shapes)
    assert any(producers.get(node.input[0]) == "QuantizeLinear" for node in shapes)
    # nearest upsampling runs as a channels-last copy, the shortcuts' pools as convolutions: what int8 runs fast
    fp32_ops = [node.op_type for node in onnx.load(str(fp32)).graph.node]
    assert fp32_ops.count("Resize") == 2 and "Resize" not in ops
    assert "AveragePool" not in fp32_ops and "AveragePool" not in ops
    props = {p.key: p.value for p in model.metadata_props}
    assert props["detr_ros.quantization"] == "int8_qdq"
    # quantized for this kind of CPU, and says so
    assert props["detr_ros.int8_weight_bits"] == str(int8_weight_bits())
    assert props["detr_ros.quantized_on"] == describe_cpu()
    assert json.loads(props["detr_ros.class_names"]) == CLASS_NAMES
    assert file_digest(int8)[1] and not file_digest(fp32)[1]  # what TensorRT's int8 "auto" looks at


def test_int8_detections_stay_close_to_fp32(int8_export):
    cache = int8_export / "cache"
    fp32 = Detector(int8_export / "tiny.onnx", cache_dir=cache, score_threshold=0.0, max_detections=15,
                    duplicate_iou=1.0)
    int8 = Detector(int8_export / "tiny.int8.onnx", cache_dir=cache, score_threshold=0.0, max_detections=15,
                    duplicate_iou=1.0)
    generator = SceneGenerator(160, 120, seed=11)
    images = [generator.image(index)[0] for index in range(4)]
    for reference, quantized in zip(fp32.detect_batch(images), int8.detect_batch(images)):
        assert len(quantized) == len(reference) == 15
        np.testing.assert_allclose(np.sort(quantized.scores), np.sort(reference.scores), atol=0.01)
        for box, class_id in zip(reference.boxes[:3], reference.class_ids[:3]):
            same_class = quantized.boxes[quantized.class_ids == class_id]
            assert len(same_class) and iou_matrix(box, same_class).max() > 0.5


def test_symmetric_int8_for_tensorrt(int8_export, tmp_path):
    checkpoint = int8_export / "tiny.pt"
    int8 = export(checkpoint, tmp_path / "trt.onnx", int8_calibration=int8_export / "calibration",
                  num_calibration_images=4, int8_symmetric=True)["int8"]
    model = onnx.load(str(int8))
    assert {p.key: p.value for p in model.metadata_props}["detr_ros.quantization"] == "int8_qdq_symmetric"
    # the channels-last copies are for onnxruntime's CPU kernels: TensorRT's file keeps its Resizes
    assert [node.op_type for node in model.graph.node].count("Resize") == 2
    initializers = {init.name: init for init in model.graph.initializer}
    zero_points = [onnx.numpy_helper.to_array(initializers[n.input[2]]) for n in model.graph.node
                   if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    reference = Detector(int8_export / "tiny.onnx", cache_dir=tmp_path / "cache", score_threshold=0.0,
                         duplicate_iou=1.0)
    quantized = Detector(int8, cache_dir=tmp_path / "cache", score_threshold=0.0, duplicate_iou=1.0)
    image = SceneGenerator(160, 120, seed=5).image(0)[0]
    np.testing.assert_allclose(np.sort(quantized.detect(image).scores), np.sort(reference.detect(image).scores),
                               atol=0.01)


def test_int8_keeps_what_is_computed_from_inf_in_float():
    """RT-DETR's border anchors are inf: nothing computed from them may be calibrated or quantized."""
    helper = onnx.helper
    anchors = onnx.numpy_helper.from_array(np.array([[0.5, np.inf]], np.float32), "anchors")
    weight = onnx.numpy_helper.from_array(np.ones((2, 2), np.float32), "weight")
    nodes = [helper.make_node("MatMul", ["x", "weight"], ["projected"], name="/model/proj/MatMul"),
             helper.make_node("Add", ["projected", "anchors"], ["shifted"], name="/model/decoder/Add"),
             helper.make_node("Sigmoid", ["shifted"], ["y"], name="/model/decoder/Sigmoid"),
             helper.make_node("Constant", [], ["minus_inf"], name="/model/mask/Constant", value=onnx.numpy_helper.from_array(
                 np.array([-np.inf], np.float32))),
             helper.make_node("Mul", ["x", "minus_inf"], ["masked"], name="/model/mask/Mul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [1, 2]) for n in ("y", "masked")],
                              [anchors, weight])
    model = helper.make_model(graph)
    assert computed_from_non_finite(model) == {"/model/decoder/Add", "/model/decoder/Sigmoid", "/model/mask/Constant",
                                               "/model/mask/Mul"}
    assert "/model/proj/MatMul" not in float_nodes(model)
    replace_non_finite(model)
    assert onnx.numpy_helper.to_array(model.graph.initializer[0]).tolist() == [[0.5, 1e6]]
    assert onnx.numpy_helper.to_array(model.graph.node[3].attribute[0].t).tolist() == [-1e6]
    assert computed_from_non_finite(model) == set()


def test_int8_keeps_thin_convolutions_in_float():
    """A convolution with few channels in and out (a small model's stem) is slower in int8 and stays
    float; one with as few inputs but more outputs, and grouped ones (depthwise pools), go int8."""
    helper = onnx.helper
    shapes = {"thin": (8, 3, 3, 3), "wider": (16, 8, 3, 3), "depthwise": (16, 1, 2, 2)}
    weights = [onnx.numpy_helper.from_array(np.ones(shape, np.float32), name) for name, shape in shapes.items()]
    nodes = [helper.make_node("Conv", ["x", "thin"], ["a"], name="thin", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["a", "wider"], ["b"], name="wider", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["b", "depthwise"], ["y"], name="depthwise", group=16, strides=[2, 2])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], weights)
    assert float_nodes(helper.make_model(graph)) == ["thin"]


def test_upsampling_as_copies_gives_the_same_maps():
    """Nearest upsampling by 2 and by 3 becomes a copy with the same values, at any batch and map size;
    a bilinear one stays a Resize."""
    helper = onnx.helper
    scales = {name: onnx.numpy_helper.from_array(np.array([1, 1, k, k], np.float32), name)
              for name, k in (("by2", 2), ("by3", 3))}
    nearest = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    nodes = [helper.make_node("Resize", ["x", "", "by2"], ["twice"], name="up2", **nearest),
             helper.make_node("Resize", ["twice", "", "by3", ""], ["six_times"], name="up3", **nearest),
             helper.make_node("Resize", ["x", "", "by2"], ["smooth"], name="bilinear", mode="linear")]
    dims = ["batch", 4, "height", "width"]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                               for name in ("twice", "six_times", "smooth")], list(scales.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    upsampling_as_copies(model)
    assert [node.op_type for node in model.graph.node].count("Resize") == 1
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for shape in ((1, 4, 3, 5), (3, 4, 6, 2)):
        x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
        expected, result = before.run(None, {"x": x}), after.run(None, {"x": x})
        assert result[1].shape == (shape[0], 4, 6 * shape[2], 6 * shape[3])
        for a, b in zip(expected, result):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("weight_bits", sorted({int8_weight_bits(), PORTABLE_INT8_WEIGHT_BITS}))
def test_int8_of_a_graph_with_only_an_image_input(int8_export, tmp_path, weight_bits):
    """A foreign graph (say a plain export of another implementation) calibrates through its own input
    name; its int8 convolution of the image stays close to float, with the weights chosen for this CPU
    and with the portable 7-bit ones (full-range int8 weights overflow the int16 sums of CPUs without
    VNNI: that is why this CPU's choice is what it is)."""
    helper = onnx.helper
    weight = onnx.numpy_helper.from_array(np.random.default_rng(0).normal(size=(16, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["pixel_values", "w"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["features"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("pixel_values", onnx.TensorProto.FLOAT,
                                                                         [1, 3, 96, 128])],
                              [helper.make_tensor_value_info("features", onnx.TensorProto.FLOAT, None)], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "plain.onnx")
    files = calibration_images(int8_export / "calibration", 4)
    quantize_int8(tmp_path / "plain.onnx", tmp_path / "plain.int8.onnx", files, ModelMetadata(input_size=(96, 128)),
                  work_dir=tmp_path, weight_bits=weight_bits)
    quantized = onnx.load(tmp_path / "plain.int8.onnx")
    assert [node.op_type for node in quantized.graph.node].count("QuantizeLinear") >= 2
    image = cv2.cvtColor(cv2.resize(cv2.imread(str(files[0])), (128, 96)), cv2.COLOR_BGR2RGB)
    image = np.ascontiguousarray(image.transpose(2, 0, 1)[None], np.float32) / 255
    reference, result = (ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"])
                         .run(None, {"pixel_values": image})[0] for name in ("plain.onnx", "plain.int8.onnx"))
    assert np.abs(result - reference).max() < 0.05 * reference.max()


def test_portable_int8_has_7_bit_weights(int8_export, tmp_path):
    int8 = export(int8_export / "tiny.pt", tmp_path / "any.onnx", int8_calibration=int8_export / "calibration",
                  num_calibration_images=4, int8_cpu="any")["int8"]
    props = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    assert props["detr_ros.int8_weight_bits"] == "7"
    assert Detector(int8, cache_dir=tmp_path / "cache").metadata.int8_weight_bits == 7


def test_int8_calibration_folder_problems(tmp_path, capsys):
    checkpoint = make_checkpoint(tmp_path / "tiny.pt", TINY_RTDETR)
    (tmp_path / "empty" / "images").mkdir(parents=True)
    for folder, message in ((tmp_path / "nowhere", "does not exist"), (tmp_path / "empty", "holds no")):
        with pytest.raises(DatasetError, match=message):
            export(checkpoint, tmp_path / "out.onnx", int8_calibration=folder)
    assert not (tmp_path / "out.onnx").exists() and not (tmp_path / "out.int8.onnx").exists()


def test_detr_export_softmax_without_no_object_at_two_sizes(tmp_path):
    torch.set_num_threads(1)
    checkpoint = make_checkpoint(tmp_path / "detr.pt", TINY_DETR)
    path = export(checkpoint, tmp_path / "detr.onnx", dynamic_size=True)["fp32"]
    deployed, _, _ = deployed_detector(checkpoint)
    runner = GraphRunner(path)
    rng = np.random.default_rng(0)
    for height, width in ((96, 128), (160, 96)):
        images = rng.random((2, 3, height, width), dtype=np.float32)
        sizes = np.array([[640, 480], [width, height]], np.int64)
        (labels, _, _), selected = runner.run(images, sizes)
        assert labels.shape == (2, TINY_DETR["num_queries"]) and selected is None
        assert labels.max() < len(CLASS_NAMES)  # the no-object class never comes out
        assert compare(deployed, runner, images, sizes) is None
    detector = Detector(path, cache_dir=tmp_path / "cache", score_threshold=0.0, duplicate_iou=1.0)
    assert detector.input_size == (96, 128) and len(detector.detect(np.zeros((50, 70, 3), np.uint8))) == 10
