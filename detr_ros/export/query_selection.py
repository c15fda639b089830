"""RT-DETR's query selection in an exported graph: found, exposed, pinned, and compared by value.

The decoder starts from the top-Q positions of the encoder's scores (a TopK inside the model). Many
positions score nearly alike, so two runs of one model that differ only by rounding (another kernel,
FP16) may select a few other queries, and their detections then differ though neither is wrong. Two
runs are therefore compared on the same queries (one run's selection ``pinned`` into the other), and
the other run's own selection separately, by value: it must be a top-Q of the first run's scores up
to a tolerance (``selection_gap``).
"""

import numpy as np
import onnx
from onnx import TensorProto, helper

from detr_ros.errors import DetrRosError

SELECTION_SCOPE = "/model/"  # the model's own TopK nodes; "/postprocessor/" holds the detections' top-K
PINNED_INPUT = "selected_queries"


def selection_node(model_proto):
    """The graph's query selection (a TopK inside the model), or None."""
    selections = [node for node in model_proto.graph.node
                  if node.op_type == "TopK" and node.name.startswith(SELECTION_SCOPE)]
    if len(selections) > 1:
        raise DetrRosError(f"export check: {len(selections)} query selections in the graph, expected one")
    return selections[0] if selections else None


def selection_output(model_proto):
    """The name of the indices output of the graph's query selection, or None."""
    node = selection_node(model_proto)
    return node.output[1] if node is not None else None


def with_selection_outputs(model_proto):
    """(copy, indices name, scores name): a copy of a graph with a query selection that also outputs
    the selected positions [N, Q] int64 and the scores they were selected by [N, S]."""
    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    node = selection_node(model)
    indices, scores = node.output[1], node.input[0]
    model.graph.output.extend([onnx.ValueInfoProto(name=indices), onnx.ValueInfoProto(name=scores)])
    return model, indices, scores


def pinned(model_proto):
    """A copy of a graph with a query selection whose decoder reads the selected positions from the
    input PINNED_INPUT [N, Q] int64 instead. The selection itself still runs, so its own choice can be
    read (with_selection_outputs) beside the pinned run."""
    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    indices = selection_output(model)
    for node in model.graph.node:
        for position, name in enumerate(node.input):
            if name == indices:
                node.input[position] = PINNED_INPUT
    model.graph.input.append(helper.make_tensor_value_info(PINNED_INPUT, TensorProto.INT64, ["batch", "queries"]))
    return model


def selection_gap(scores, chosen):
    """How far ``chosen`` [N, Q] is from a top-Q of ``scores`` [N, S]: the largest difference between
    the k-th best chosen score and the k-th best score of the row, relative to 1 + its size."""
    best = -np.sort(-scores, axis=1)[:, :chosen.shape[1]]
    picked = -np.sort(-np.take_along_axis(scores, chosen, axis=1), axis=1)
    return float((np.abs(picked - best) / (1.0 + np.abs(best))).max())
