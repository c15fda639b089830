"""Does an exported graph compute what the PyTorch model computes? Compared so that exact ties cannot decide.

RT-DETR picks its decoder queries by top-K over the encoder's scores, and the post-processing takes
the top-K (query, class) pairs. Where two candidates score exactly the same (positions the
valid-anchor mask zeroes all score alike; saturated scores), which one a top-K returns first is up
to the kernel, and x86 CPUs with and without AVX-512 break such ties differently. So:

- PyTorch runs on the queries the graph selected (``pytorch_outputs(..., selected=...)``): the
  decoder is then compared on the same input, and the encoder through the selected scores;
- detections are compared as sets (``detection_difference``): each detection of one side is matched
  to one of the same class, box and score on the other, whatever their order.

A real difference still shows: one changed weight anywhere changes the scores or boxes by far more
than float32 rounding does.
"""

import numpy as np
import onnx
import onnxruntime as ort
import torch

from detr_ros.errors import DetrRosError
from detr_ros.export.query_selection import selection_gap, selection_output

# Float32 kernels that sum in another order differ by a few units of 1e-7 per operation; through the
# detector's hundred or so layers that stays below 1e-5 in a score (a probability) and below 1e-5 of
# the image size in a box coordinate. The tolerances leave a factor of ten above that.
SCORE_TOLERANCE = 1e-4
BOX_TOLERANCE_OF_IMAGE_SIZE = 1e-4
SELECTION_SCORES_MODULE = "decoder.enc_score_head"


class GraphRunner:
    """The ONNX graph on ONNX Runtime's CPU provider, with its query selection as an extra output.

    run(images [N, 3, H, W] float32, orig_sizes [N, 2] int64) -> ((labels [N, K], boxes [N, K, 4],
    scores [N, K]), selected [N, Q] int64 or None).
    """

    def __init__(self, path):
        model_proto = onnx.load(str(path))
        self._selection = selection_output(model_proto)
        if self._selection is not None:
            model_proto.graph.output.append(onnx.ValueInfoProto(name=self._selection))
        options = ort.SessionOptions()
        options.log_severity_level = 4  # a failing run is reported by the caller, in one line
        self._session = ort.InferenceSession(model_proto.SerializeToString(), options,
                                             providers=["CPUExecutionProvider"])

    def run(self, images, orig_sizes):
        names = ["labels", "boxes", "scores"] + ([self._selection] if self._selection else [])
        found = self._session.run(names, {"images": images, "orig_target_sizes": orig_sizes})
        return tuple(found[:3]), (found[3] if self._selection else None)


def pytorch_outputs(deployed, images, orig_sizes, selected=None):
    """DeployedDetector outputs (labels, boxes, scores) as numpy; with ``selected`` [N, Q], on those queries.

    The selection is imposed by lifting the chosen positions' encoder scores above all others, so the
    model's own top-K takes them; their order among themselves does not matter to the decoder, whose
    attention treats the queries as a set. Also returns how far the chosen positions' encoder scores
    (the best class's logit) are from PyTorch's own top-Q scores, or None without a selection.
    """
    head = dict(deployed.named_modules()).get(f"model.{SELECTION_SCORES_MODULE}")
    hook, selection_gaps = None, []
    if selected is not None:
        if head is None:
            raise DetrRosError("export check: the graph selects queries, the PyTorch model has no query selection")
        index = torch.from_numpy(np.ascontiguousarray(selected)).long()

        def lift_selected(module, inputs, logits):  # logits: [N, S, C]
            best = logits.max(-1).values  # [N, S]
            selection_gaps.append(selection_gap(best.numpy(), selected))
            lift = torch.zeros_like(best).scatter_(1, index, float(best.max() - best.min()) + 1.0)
            return logits + lift.unsqueeze(-1)

        hook = head.register_forward_hook(lift_selected)
    try:
        with torch.no_grad():
            outputs = deployed(torch.from_numpy(images), torch.from_numpy(orig_sizes))
    finally:
        if hook is not None:
            hook.remove()
    return tuple(t.numpy() for t in outputs), (selection_gaps[0] if selection_gaps else None)


def detection_difference(expected, found, box_tolerance, score_tolerance=SCORE_TOLERANCE):
    """Why two detection sets of one image differ, or None when they are the same.

    expected, found: (labels [K], boxes [K, 4], scores [K]). Every detection scoring clearly above
    both sets' lowest score must match one on the other side with the same label, a score within
    ``score_tolerance`` and every box coordinate within ``box_tolerance``. Detections at the lowest
    score are exempt: a top-K cut through equal scores keeps any of them.
    """
    floor = max(expected[2].min(initial=0.0), found[2].min(initial=0.0)) + score_tolerance
    kept_expected = np.flatnonzero(expected[2] > floor)
    kept_found = np.flatnonzero(found[2] > floor)
    if len(kept_expected) != len(kept_found):
        return f"{len(kept_expected)} detections above {floor:.4f} against {len(kept_found)}"
    unmatched = list(kept_found)
    worst_score = worst_box = 0.0
    for i in kept_expected[np.argsort(-expected[2][kept_expected], kind="stable")]:
        candidates = [j for j in unmatched if found[0][j] == expected[0][i]]
        if not candidates:
            return f"no detection of class {expected[0][i]} to match score {expected[2][i]:.4f}"
        score_gaps = np.abs(found[2][candidates] - expected[2][i])
        box_gaps = np.abs(found[1][candidates] - expected[1][i]).max(-1)
        best = int(np.argmin(box_gaps / box_tolerance + score_gaps / score_tolerance))
        worst_score, worst_box = max(worst_score, score_gaps[best]), max(worst_box, box_gaps[best])
        unmatched.remove(candidates[best])
    if worst_score > score_tolerance or worst_box > box_tolerance:
        return f"scores by {worst_score:.2e}, boxes by {worst_box:.2e} px"
    return None


def box_tolerance(orig_sizes):
    """The box tolerance in pixels for images of these (width, height) sizes."""
    return BOX_TOLERANCE_OF_IMAGE_SIZE * float(np.max(orig_sizes))


def compare(deployed, runner, images, orig_sizes):
    """Run both on one batch; the first difference found, as a sentence, or None."""
    found, selected = runner.run(images, orig_sizes)
    expected, selection_gap = pytorch_outputs(deployed, images, orig_sizes, selected)
    # The graph's choice must be a top-Q of PyTorch's encoder scores too: equal by value, ties aside.
    if selection_gap is not None and selection_gap > SCORE_TOLERANCE:
        return f"selects other queries (encoder scores by {selection_gap:.2e} of their size)"
    for image in range(len(images)):
        difference = detection_difference(tuple(t[image] for t in expected), tuple(t[image] for t in found),
                                          box_tolerance(orig_sizes[image]))
        if difference is not None:
            return difference
    return None


def verify_export(deployed, path, input_size, *, dynamic_size):
    """Run the graph and PyTorch on one random image (and a second size when dynamic); raise on a difference.

    Tracing turns any size-dependent Python value into a constant; a model whose code does that
    would export a dynamic-size graph that is wrong (or fails) at every other size.
    """
    height, width = input_size
    sizes = [(height, width)] + ([(height + 64, max(32, width - 32))] if dynamic_size else [])
    runner = GraphRunner(path)
    generator = torch.Generator().manual_seed(0)
    for size in sizes:
        images = torch.rand(1, 3, *size, generator=generator).numpy()
        orig_sizes = np.array([[size[1], size[0]]], np.int64)
        try:
            difference = compare(deployed, runner, images, orig_sizes)
            what = None if difference is None else f"differs from PyTorch ({difference})"
        except Exception as error:  # onnxruntime's own exception types
            what = f"fails ({str(error).splitlines()[0]})"
        if what is not None:
            hint = (" The model's code bakes size-dependent values into the trace; export without --dynamic-size."
                    if dynamic_size and size != sizes[0] else "")
            raise DetrRosError(f"export check: the ONNX graph at input {size[0]}x{size[1]} {what}.{hint}")
