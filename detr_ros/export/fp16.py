"""FP16 by construction: a strongly typed half-precision copy of an exported graph that keeps FP32's detections.

TensorRT 11 has no FP16 builder flag: an engine runs each tensor in the type the ONNX file gives it.
So the FP16 file says it all: FP32 inputs and outputs (callers are unchanged), FP16 weights and
activations where FP16 is safe, and FP32 where it is not. Which operators stay FP32 follows a rule,
then a measurement:

The rule (``rule_fp32_nodes``). FP16 has 11 significant bits and a largest finite value of 65504.
- Statistics and exponentials: LayerNormalization, reductions, Softmax, Exp, Log, Pow, Sqrt and
  Reciprocal. Sums of many squares overflow, and the range of exp/log/pow is the exponent of their
  input's.
- Attention logits: what feeds a Softmax, back to and including the product that forms the logits.
  An FP16 logit of 100 is only 1/16 exact, which is 6% of an attention weight.
- Selection by value (TopK): FP16 ties what FP32 orders.
- Box decoding and post-processing: everything between the graph's outputs (and the sampling
  locations of deformable attention) and the heads' last learned layer, that layer included: the
  heads' biases, sigmoids and inverse sigmoids (the logit of a sigmoid that FP16 rounds to 1.0 is
  infinite), the box refinement, anchors, and the scaling to pixels (FP16 counts whole pixels only
  up to 2048, every second pixel above).
- Arithmetic on tensor sizes, which costs nothing and is exact only in FP32 above 2048.
- What the converter itself keeps FP32 (no FP16 kernel, or float-only inputs such as Resize's scales).

The measurement (``range_fp32_nodes``). The FP32 graph runs on check images (black, white, noise,
synthetic scenes, calibration images where given); every node whose inputs or outputs reach beyond
RANGE_LIMIT stays FP32 too, and the export names them.

Then the checks before the file is written (``make_fp16``): an emulated-FP16 graph, which rounds
every weight and every activation of the FP16 operators to FP16 and so stores each intermediate as
FP16 would, must have no inf or NaN where FP32 has none (a node where one appears stays FP32 and the
check runs again); and the detections of the FP16 file and of the emulated graph must agree with
FP32's within SCORE_P99_BOUND and BOX_P99_BOUND (see detr_ros.export.agreement), else the export is
refused with the figures. They are compared on the queries FP32 selects (pinned, see
detr_ros.export.query_selection): the encoder scores many positions nearly alike, and FP16 rounding
that swaps a few of them would change the detections without any operator being wrong. FP16's own
selection is checked apart: a top-Q of FP32's encoder scores within SELECTION_TOLERANCE.

On the CPU, ONNX Runtime runs most FP16 operators as FP32 between casts, so the FP16 file's own CPU
run is optimistic and the emulated graph pessimistic: GPUs keep the partial sums of a product in
FP32 where the emulation rounds only what is stored.
"""

import logging
import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxconverter_common import float16

from detr_ros.errors import DetrRosError
from detr_ros.export.agreement import agreement
from detr_ros.export.query_selection import (PINNED_INPUT, pinned, selection_gap, selection_node,
                                             with_selection_outputs)
from detr_ros.runtime.preprocess import Preprocessor
from detr_ros.synthetic import SceneGenerator

LOG = logging.getLogger("detr_ros.export")

FP16_MAX = float(np.finfo(np.float16).max)  # 65504
# Check images show only part of what a camera will: a value a sixteenth of the way to overflow in
# them has four binades of headroom for brighter, busier or stranger scenes.
RANGE_LIMIT = FP16_MAX / 16
# An FP16 value is exact to 2^-11 (0.05%). Roundings of independent sign add up like a random walk:
# through the ~100 to ~200 stored activations on a path from image to head (an R18 to an R50 model)
# they move what a head reads by sqrt(100..200) * 0.05%, about 0.5 to 0.7%. A score, the sigmoid
# (slope at most 1/4) of a logit a few units large, then moves by up to about 0.015 and a box side by
# about 0.1% of the image; the bounds allow twice that for the 99th percentile. They stay inside
# what a user sees: a box 0.25% of the image off keeps IoU 0.95 with FP32's for objects a twentieth
# of the image or larger.
SCORE_P99_BOUND = 0.03
BOX_P99_BOUND = 0.0025
# The same walk moves an encoder score (a logit) by about 0.7% of its size: a query FP16 selects in
# place of FP32's must score within twice that of it, relative to 1 + |score| as selection_gap measures.
SELECTION_TOLERANCE = 0.015
SCENES = 8
EMULATION_ROUNDS = 3

STATISTICS_AND_EXPONENTIALS = frozenset({
    "LayerNormalization", "GroupNormalization", "InstanceNormalization", "ReduceMean", "ReduceSum",
    "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "Softmax", "LogSoftmax", "Exp", "Log", "Pow", "Sqrt",
    "Reciprocal"})
SELECTIONS = frozenset({"TopK"})
LEARNED = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose"})
# Element-wise arithmetic and data movement: the backward walks from outputs, logits and sampling
# locations pass through these (and stop at anything else).
ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Clip", "Sigmoid", "Tanh", "Relu", "Log", "Exp", "Min", "Max",
    "Where", "Cast", "Concat", "Split", "Slice", "Squeeze", "Unsqueeze", "Reshape", "Flatten", "Transpose",
    "Gather", "GatherElements", "GatherND", "Expand", "Tile", "Identity", "ReduceMax", "ReduceMin"})
SIZE_SOURCES = frozenset({"Shape", "Size"})


@dataclass
class Fp16Plan:
    """Which nodes stay FP32, and why: {node name: reason}."""

    fp32_nodes: dict = field(default_factory=dict)

    def keep(self, names, reason):
        for name in names:
            self.fp32_nodes.setdefault(name, reason)

    def by_reason(self, prefix):
        return {name: why for name, why in self.fp32_nodes.items() if why.startswith(prefix)}


@dataclass
class Fp16Report:
    """What make_fp16 decided and measured."""

    plan: Fp16Plan
    fp16_weight_fraction: float
    fp16_file: object  # Comparison of the FP16 file's CPU run with FP32's
    emulated: object  # Comparison of the emulated-FP16 graph with FP32's
    images: int

    def figures(self):
        return {"fp32_nodes": len(self.plan.fp32_nodes), "fp32_nodes_by_range": self.plan.by_reason("range"),
                "fp16_weight_fraction": round(self.fp16_weight_fraction, 4), "check_images": self.images,
                "fp16_file_vs_fp32": self.fp16_file.figures(), "emulated_vs_fp32": self.emulated.figures()}


@dataclass
class Comparison:
    """One graph against FP32 on the same images: detections on FP32's queries, and its own selection.

    detections: Agreement of the detections, both graphs run on the queries FP32 selects;
    selection_gap: selection_gap of the graph's own query selection on FP32's encoder scores (0.0 for
    a graph without query selection); queries_moved: how many of its selected queries (all images)
    FP32 does not select.
    """

    detections: object
    selection_gap: float = 0.0
    queries_moved: int = 0

    def figures(self):
        return {**self.detections.figures(), "selection_gap": self.selection_gap, "queries_moved": self.queries_moved}


# --- graph helpers --------------------------------------------------------------------------------

def _consumers(graph):
    found = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def _producers(graph):
    return {output: node for node in graph.node for output in node.output}


def _float_tensors(model_proto):
    """Names of the FLOAT tensors of a shape-inferred graph (values, inputs, outputs, initializers)."""
    graph = model_proto.graph
    typed = list(graph.value_info) + list(graph.input) + list(graph.output)
    names = {v.name for v in typed if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    return names | {init.name for init in graph.initializer if init.data_type == TensorProto.FLOAT}


def prepared_for_fp16(model_proto):
    """A shape-inferred copy with the graph in the form the rule and the converter work on.

    Every node is named; Constant nodes become initializers (so a constant read only by FP32 nodes
    stays FP32, as the converter keeps initializers of blocked nodes); Identity nodes that only pass
    an initializer on are removed (PyTorch shares tied weights so, and the converter would type such
    an Identity's input and output differently).
    """
    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    graph = model.graph
    outputs = {o.name for o in graph.output}
    for index, node in enumerate(graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}_{node.output[0]}"
    initializers = {init.name for init in graph.initializer}
    renamed, kept = {}, []
    for node in graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and value is not None and node.output[0] not in outputs:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            initializers.add(tensor.name)
        elif node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs:
            renamed[node.output[0]] = node.input[0]
        else:
            kept.append(node)
    for node in kept:
        for position, name in enumerate(node.input):
            node.input[position] = renamed.get(name, name)
    del graph.node[:]
    graph.node.extend(kept)
    return onnx.shape_inference.infer_shapes(model)


# --- the rule -------------------------------------------------------------------------------------

def _walk_back(graph, start, include_learned):
    """Names of the nodes that compute the tensors ``start`` through ELEMENTWISE operators; the first
    LEARNED node on each path is included when ``include_learned``, and ends that path."""
    producers = _producers(graph)
    found, pending = set(), list(start)
    while pending:
        node = producers.get(pending.pop())
        if node is None or node.name in found:
            continue
        if node.op_type in LEARNED:
            if include_learned:
                found.add(node.name)
            continue
        if node.op_type not in ELEMENTWISE:
            continue
        found.add(node.name)
        pending.extend(node.input)
    return found


def _size_arithmetic(graph):
    """Names of the nodes that compute only from tensor sizes (Shape, Size) and constants."""
    initializers = {init.name for init in graph.initializer}
    from_sizes, found = set(), set()
    for node in graph.node:  # ONNX nodes are topologically sorted
        inputs = [name for name in node.input if name and name not in initializers]
        if node.op_type in SIZE_SOURCES or (inputs and all(name in from_sizes for name in inputs)):
            from_sizes.update(node.output)
            found.add(node.name)
    return found


def rule_fp32_nodes(model_proto):
    """The plan of the rule (see the module docstring) for a prepared_for_fp16 graph."""
    graph = model_proto.graph
    plan = Fp16Plan()
    plan.keep([n.name for n in graph.node if n.op_type in STATISTICS_AND_EXPONENTIALS], "statistics or exponential")
    softmax_inputs = [n.input[0] for n in graph.node if n.op_type in ("Softmax", "LogSoftmax")]
    plan.keep(_walk_back(graph, softmax_inputs, include_learned=True), "attention logits")
    plan.keep([n.name for n in graph.node if n.op_type in SELECTIONS], "selection by value")
    heads = [o.name for o in graph.output] + [n.input[0] for n in graph.node if n.op_type in SELECTIONS]
    heads += [n.input[1] for n in graph.node if n.op_type == "GridSample"]
    plan.keep(_walk_back(graph, heads, include_learned=True), "box decoding, scores or post-processing")
    plan.keep(_size_arithmetic(graph), "size arithmetic")
    plan.keep([n.name for n in graph.node if n.op_type in float16.DEFAULT_OP_BLOCK_LIST], "no FP16 form")
    return plan


# --- the measurement ------------------------------------------------------------------------------

def _with_every_float_output(model_proto, names):
    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    present = {o.name for o in model.graph.output}
    initializers = {init.name for init in model.graph.initializer}
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in sorted(names - present - initializers))
    return model


def _session(model_proto):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


@dataclass
class _Activations:
    """Per float tensor: the largest finite magnitude and the most non-finite elements in one image."""

    largest: dict = field(default_factory=dict)
    non_finite: dict = field(default_factory=dict)


def measure_activations(model_proto, images):
    """Run ``model_proto`` with every float tensor as an output on each (blob, sizes) of ``images``."""
    names = _float_tensors(model_proto)
    probe = _with_every_float_output(model_proto, names)
    session = _session(probe)
    outputs = [o.name for o in session.get_outputs() if o.name in names]
    found = _Activations()
    for blob, sizes in images:
        for name, value in zip(outputs, session.run(outputs, {"images": blob, "orig_target_sizes": sizes})):
            finite = np.isfinite(value)
            largest = float(np.abs(value[finite]).max(initial=0.0))
            found.largest[name] = max(found.largest.get(name, 0.0), largest)
            found.non_finite[name] = max(found.non_finite.get(name, 0), int(value.size - finite.sum()))
    for init in model_proto.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            values = numpy_helper.to_array(init)
            found.largest[init.name] = float(np.abs(values[np.isfinite(values)]).max(initial=0.0))
    return found


def range_fp32_nodes(model_proto, activations, plan):
    """Add to ``plan`` every node whose float inputs or outputs reach beyond RANGE_LIMIT."""
    for node in model_proto.graph.node:
        largest = max((activations.largest.get(name, 0.0) for name in list(node.input) + list(node.output)),
                      default=0.0)
        if largest > RANGE_LIMIT and node.name not in plan.fp32_nodes:
            plan.fp32_nodes[node.name] = f"range: values up to {largest:.4g}"


# --- FP16 and emulated FP16 -----------------------------------------------------------------------

def _split_shared_initializers(model_proto, fp32_nodes):
    """Give FP32 nodes their own copy of each float initializer that FP16 nodes read too (in place):
    the converter keeps an initializer FP32 when any reader is FP32, and leaves the others mistyped."""
    graph = model_proto.graph
    readers = _consumers(graph)
    for init in list(graph.initializer):
        nodes = readers.get(init.name, [])
        precise = [n for n in nodes if n.name in fp32_nodes]
        if init.data_type != TensorProto.FLOAT or not precise or len(precise) == len(nodes):
            continue
        copy = graph.initializer.add()
        copy.CopyFrom(init)
        copy.name = f"{init.name}/fp32"
        for node in precise:
            for position, name in enumerate(node.input):
                if name == init.name:
                    node.input[position] = copy.name


def _retype_casts(model_proto, float_outputs):
    """Undo two of the converter's typing faults (in place). A Cast to FLOAT outside the FP32 nodes
    keeps casting to FLOAT while the converter types its output FP16: it casts to FLOAT16. A graph
    output of an FP32 node gets a Cast to FLOAT16 and becomes FP16: that Cast casts to FLOAT (an
    exact copy) and the output is FLOAT again."""
    graph = model_proto.graph
    half = {v.name for v in graph.value_info if v.type.tensor_type.elem_type == TensorProto.FLOAT16}
    outputs = {o.name: o for o in graph.output if o.name in float_outputs}
    for node in graph.node:
        if node.op_type != "Cast":
            continue
        to = next(a for a in node.attribute if a.name == "to")
        if node.output[0] in outputs:
            to.i = TensorProto.FLOAT
            outputs[node.output[0]].type.tensor_type.elem_type = TensorProto.FLOAT
        elif node.output[0] in half and to.i == TensorProto.FLOAT:
            to.i = TensorProto.FLOAT16


def _cast_to(node, to):
    return node is not None and node.op_type == "Cast" and next(a.i for a in node.attribute if a.name == "to") == to


def _bypass_round_trips(model_proto):
    """Let every reader of a Cast FLOAT16 -> FLOAT of a Cast FLOAT -> FLOAT16 of an FP32 tensor read
    that tensor, and drop the Casts no one reads then (in place). The converter puts such a pair
    between two FP32 nodes and removes it only where the first Cast has one reader: elsewhere the
    value would pass through FP16 on its way from one FP32 node to another."""
    graph = model_proto.graph
    producers = _producers(graph)
    floats = {v.name for v in list(graph.value_info) + list(graph.input)
              if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    for node in graph.node:
        for position, name in enumerate(node.input):
            back = producers.get(name)
            there = producers.get(back.input[0]) if _cast_to(back, TensorProto.FLOAT) else None
            if _cast_to(there, TensorProto.FLOAT16) and there.input[0] in floats:
                node.input[position] = there.input[0]
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        unread = [n for n in graph.node if n.op_type == "Cast" and not read.intersection(n.output)]
        if not unread:
            return
        for node in unread:
            graph.node.remove(node)


def _rounded_as_converter_does(values):
    """FP16 values (as float32) of a 1-D float32 array, as the converter stores weights: to the nearest
    FP16 value, subnormals and zero included (no smallest value is forced), finite beyond 65504."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns for every value it clamps
        return float16.convert_np_to_float16(values, 0.0, FP16_MAX).astype(np.float32)


def to_fp16(prepared, plan):
    """The strongly typed FP16 graph of a prepared_for_fp16 graph: FP32 inputs and outputs, FP32 where
    ``plan`` says, FP16 elsewhere. The converter's (onnxconverter-common) known faults are worked
    around here and only here: shared initializers (split before), Casts it types wrongly (retyped
    after, see _retype_casts), FP16 round trips it leaves between FP32 nodes (_bypass_round_trips),
    and its own cast pair removal, which fails on some block lists (the
    blocks are handed over as node names, never as operator types)."""
    model = onnx.ModelProto()
    model.CopyFrom(prepared)
    float_outputs = {o.name for o in model.graph.output if o.type.tensor_type.elem_type == TensorProto.FLOAT}
    _split_shared_initializers(model, plan.fp32_nodes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns for every weight it clamps
        model = float16.convert_float_to_float16(
            model, min_positive_val=0.0, max_finite_val=FP16_MAX, keep_io_types=True, op_block_list=[],
            node_block_list=sorted(plan.fp32_nodes))
    _retype_casts(model, float_outputs)
    _bypass_round_trips(model)
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def fp16_weight_fraction(model_proto):
    """The share of the floating-point weights (by count) that the graph stores as FP16."""
    counts = {TensorProto.FLOAT: 0, TensorProto.FLOAT16: 0}
    for init in model_proto.graph.initializer:
        if init.data_type in counts:
            counts[init.data_type] += int(np.prod(init.dims))
    total = sum(counts.values())
    return counts[TensorProto.FLOAT16] / total if total else 0.0


def emulated_fp16(prepared, plan):
    """An FP32 graph that computes as the FP16 one stores: the FP16 nodes' float weights rounded to
    FP16 as the converter rounds them, and every float input and output of those nodes cast to FP16
    and back. The tensors keep their names and hold the rounded values."""
    model = onnx.ModelProto()
    model.CopyFrom(prepared)
    graph = model.graph
    _split_shared_initializers(model, plan.fp32_nodes)
    floats = _float_tensors(model)
    readers = _consumers(graph)
    for init in graph.initializer:
        nodes = readers.get(init.name, [])
        if init.data_type == TensorProto.FLOAT and nodes and not any(n.name in plan.fp32_nodes for n in nodes):
            values = numpy_helper.to_array(init)
            rounded = _rounded_as_converter_does(values.reshape(-1)).reshape(values.shape)
            init.CopyFrom(numpy_helper.from_array(rounded, init.name))
    initializers = {init.name for init in graph.initializer}
    rounded_inputs, nodes = {}, []

    def round_trip(source, target, prefix):
        return [helper.make_node("Cast", [source], [f"{target}/fp16"], name=f"{prefix}/ToFp16", to=TensorProto.FLOAT16),
                helper.make_node("Cast", [f"{target}/fp16"], [target], name=f"{prefix}/ToFp32", to=TensorProto.FLOAT)]

    produced_in_fp16 = set()
    for node in graph.node:
        if node.name in plan.fp32_nodes:
            nodes.append(node)
            continue
        for position, name in enumerate(node.input):
            if name in floats and name not in initializers and name not in produced_in_fp16:
                if name not in rounded_inputs:
                    rounded_inputs[name] = f"{name}/as_fp16"
                    nodes += round_trip(name, rounded_inputs[name], f"{name}/as_fp16")
                node.input[position] = rounded_inputs[name]
        unrounded = []
        for position, name in enumerate(node.output):
            if name in floats:
                node.output[position] = f"{name}/unrounded"
                unrounded.append(name)
        nodes.append(node)
        for name in unrounded:
            nodes += round_trip(f"{name}/unrounded", name, f"{node.name}/{name}")
            produced_in_fp16.add(name)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


# --- the checks -----------------------------------------------------------------------------------

def network_inputs(metadata, pictures):
    """(blob [1, 3, H, W] float32, sizes [1, 2] int64) of each BGR uint8 picture, pre-processed as the
    runtime does for a model of this metadata; None entries (unreadable files) are skipped."""
    preprocessor = Preprocessor(metadata.input_size, metadata.resize_mode, metadata.color_order,
                                metadata.scale_factor)
    canvases = preprocessor.new_canvases()
    inputs = []
    for picture in pictures:
        if picture is None:
            continue  # an image the calibration reader refuses is reported there
        blob = np.empty((1, 3, *metadata.input_size), np.float32)
        preprocessor.fill(blob[0], picture, "bgr", canvases)
        inputs.append((blob, np.array([[picture.shape[1], picture.shape[0]]], np.int64)))
    return inputs


def check_images(metadata, files=()):
    """network_inputs of black, white and noise images, SCENES synthetic scenes and the image ``files``."""
    height, width = metadata.input_size
    noise = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    pictures = [np.zeros((height, width, 3), np.uint8), np.full((height, width, 3), 255, np.uint8), noise]
    generator = SceneGenerator(width, height, seed=16)
    pictures += [generator.image(index)[0] for index in range(SCENES)]
    pictures += [cv2.imread(str(path), cv2.IMREAD_COLOR) for path in files]
    return network_inputs(metadata, pictures)


def detections(model_proto, images, selected=None):
    """Per image of ``images`` (network_inputs): the graph's (labels, boxes, scores) on the CPU, and
    its query selection (indices [1, Q], scores [1, S]), or None for a graph without one. With
    ``selected`` (per image, indices [1, Q]) the decoder runs on those queries instead."""
    selecting = selection_node(model_proto) is not None
    graph = pinned(model_proto) if selected is not None else model_proto
    names = ["labels", "boxes", "scores"]
    if selecting:
        graph, indices, scores = with_selection_outputs(graph)
        names += [indices, scores]
    session = _session(graph)
    runs = []
    for position, (blob, sizes) in enumerate(images):
        feeds = {"images": blob, "orig_target_sizes": sizes}
        if selected is not None:
            feeds[PINNED_INPUT] = selected[position]
        runs.append(session.run(names, feeds))
    found = [tuple(t[0] for t in run[:3]) for run in runs]
    return found, ([tuple(run[3:]) for run in runs] if selecting else None)


def compare_with_fp32(fp32, others, images):
    """{name: Comparison} of each graph of ``others`` ({name: ModelProto}) with the graph ``fp32``."""
    expected, selections = detections(fp32, images)
    chosen = [indices for indices, _ in selections] if selections else None
    sizes = [tuple(s[0]) for _, s in images]
    compared = {}
    for name, model_proto in others.items():
        found, own = detections(model_proto, images, chosen)
        found_agreement = agreement(expected, found, sizes)
        if own is None:
            compared[name] = Comparison(found_agreement)
            continue
        gap = max(selection_gap(scores, mine) for (_, scores), (mine, _) in zip(selections, own))
        moved = sum(len(np.setdiff1d(mine, theirs)) for theirs, (mine, _) in zip(chosen, own))
        compared[name] = Comparison(found_agreement, gap, moved)
    return compared


def _new_non_finite(model_proto, reference, emulated):
    """The nodes where the emulation first holds more inf/NaN than FP32: a grown output, no grown input."""
    grown = {name for name, count in emulated.non_finite.items() if count > reference.non_finite.get(name, 0)}
    return [node.name for node in model_proto.graph.node
            if grown.intersection(node.output) and not grown.intersection(node.input)]


def _problem(name, found):
    if found.selection_gap > SELECTION_TOLERANCE:
        return (f"{name}: selects queries FP32 scores lower (encoder scores by {found.selection_gap:.2%} of 1 + "
                f"their size, tolerance {SELECTION_TOLERANCE:.1%})")
    found = found.detections
    if found.unmatched:
        return f"{name}: {len(found.unmatched)} confident detections unmatched ({found.unmatched[0]})"
    if found.score_p99 > SCORE_P99_BOUND or found.box_p99 > BOX_P99_BOUND:
        return (f"{name}: p99 score difference {found.score_p99:.4f} (bound {SCORE_P99_BOUND}), p99 box "
                f"difference {found.box_p99:.2%} of the image (bound {BOX_P99_BOUND:.2%})")
    return None


def compared_fp16(model_proto, images):
    """(FP16 ModelProto, Fp16Report) for an exported FP32 graph: the FP16 file and the emulated FP16 graph,
    both compared with FP32 on ``images`` (check_images), not yet judged against the bounds (make_fp16).

    Raises DetrRosError when the emulated FP16 run still overflows with every operator it names kept FP32.
    """
    prepared = prepared_for_fp16(model_proto)
    plan = rule_fp32_nodes(prepared)
    reference = measure_activations(prepared, images)
    range_fp32_nodes(prepared, reference, plan)
    ranged = plan.by_reason("range")
    if ranged:
        LOG.warning("FP16: %d operators keep FP32 because their values reach beyond %.0f (65504/16): %s",
                    len(ranged), RANGE_LIMIT, ", ".join(f"{name} ({why[7:]})" for name, why in ranged.items()))
    for _ in range(EMULATION_ROUNDS):
        emulated = emulated_fp16(prepared, plan)
        overflowing = _new_non_finite(prepared, reference, measure_activations(emulated, images))
        if not overflowing:
            break
        LOG.warning("FP16: inf or NaN in the emulated FP16 run; keeping FP32: %s", ", ".join(overflowing))
        plan.keep(overflowing, "range: inf or NaN in the emulated FP16 run")
    else:
        raise DetrRosError(f"FP16: the emulated FP16 run still overflows at {', '.join(overflowing)} "
                           f"with {len(plan.fp32_nodes)} operators in FP32; export without FP16")
    half = to_fp16(prepared, plan)
    compared = compare_with_fp32(prepared, {"fp16": half, "emulated": emulated}, images)
    return half, Fp16Report(plan, fp16_weight_fraction(half), compared["fp16"], compared["emulated"], len(images))


def make_fp16(model_proto, images):
    """(FP16 ModelProto, Fp16Report) for an exported FP32 graph, checked on ``images`` (check_images).

    Raises DetrRosError naming the operators and the figures when FP16 cannot keep FP32's detections.
    """
    half, report = compared_fp16(model_proto, images)
    problems = [p for p in (_problem("the FP16 file", report.fp16_file), _problem("the emulated FP16 graph",
                                                                                 report.emulated)) if p]
    if problems:
        kept = ", ".join(report.plan.by_reason("range")) or "none"
        raise DetrRosError(f"FP16 refused, detections differ from FP32: {'; '.join(problems)}. Operators kept "
                           f"FP32 for their range: {kept}")
    return half, report
