"""How far two runs of one detector agree: detections matched as sets, then their score and box differences.

A change of precision or of hardware (FP16, TensorRT, another GPU) moves every score and box a little
and may reorder candidates of nearly equal score; what a user sees changes only where a confident
detection appears, disappears or moves. So each confident detection of either run is matched, one to
one, to a same-class detection of the other run on the same object, at any score (a detection at 0.31
in one run and 0.29 in the other is the same detection), and the differences are summarised over the
matched pairs.

A detector that outputs its top K detections cuts through near-equal scores when more than K are
confident: a detection just above one run's cut may sit just below the other's. A detection without
a partner is therefore only counted when it scores above the other run's lowest output score by more
than the largest score difference of all matched pairs; below that, either run may keep it.
"""

from dataclasses import dataclass, field

import numpy as np

from detr_ros.runtime.detections import iou_matrix

# Two boxes overlapping this much are the same object (COCO's loosest threshold).
MATCH_IOU = 0.5
CONFIDENT_SCORE = 0.3


@dataclass
class Agreement:
    """Summary over images. Box differences are in fractions of the image's longer side.

    pairs: matched (confident) detections; unmatched: a line for each confident detection of either
    run that has no partner in the other; at_cut: confident detections without a partner that either
    run's top-K cut may keep or drop (not counted as unmatched).
    """

    pairs: int = 0
    unmatched: list = field(default_factory=list)
    at_cut: int = 0
    score_p99: float = 0.0
    score_max: float = 0.0
    box_p99: float = 0.0
    box_max: float = 0.0

    def figures(self):
        """The summary as a JSON-ready dict."""
        return {"pairs": self.pairs, "unmatched": len(self.unmatched), "at_cut": self.at_cut, "score_p99": self.score_p99,
                "score_max": self.score_max, "box_p99_of_image": self.box_p99, "box_max_of_image": self.box_max}


def _match(first, second, taken_first, taken_second, confident_score):
    """Pair each confident, untaken detection of ``first`` (best scores first) with an untaken
    same-class detection of ``second`` overlapping it by MATCH_IOU or more: the one of the smallest
    score difference plus overlap shortfall (1 - IoU), since duplicates of one object overlap each
    other too, some scoring alike, others lying alike, but a detection's counterpart does both.
    Returns [(i, j)] and the unpaired i."""
    labels, boxes, scores = first
    pairs, unpaired = [], []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] <= confident_score or i in taken_first:
            continue
        candidates = [j for j in range(len(second[2])) if j not in taken_second and second[0][j] == labels[i]]
        overlaps = iou_matrix(boxes[i], second[1][candidates])[0] if candidates else np.zeros(0)
        same_object = [(j, overlap) for j, overlap in zip(candidates, overlaps) if overlap >= MATCH_IOU]
        if not same_object:
            unpaired.append(i)
            continue
        j, _ = min(same_object, key=lambda pair: abs(float(second[2][pair[0]]) - float(scores[i])) + 1.0 - pair[1])
        taken_first.add(i)
        taken_second.add(j)
        pairs.append((i, j))
    return pairs, unpaired


def _cut(scores):
    """The lowest score a run output (its top-K cut); -inf for a run without detections, which cut none."""
    return float(scores.min()) if len(scores) else -np.inf


def agreement(reference, other, image_sizes, confident_score=CONFIDENT_SCORE):
    """Agreement of two runs over the same images.

    reference, other: per image (labels [K] int, boxes [K, 4] xyxy pixels, scores [K]);
    image_sizes: per image (width, height) of the pixels the boxes are in.
    """
    score_gaps, box_gaps, unpaired = [], [], []
    for expected, found, size in zip(reference, other, image_sizes):
        taken_expected, taken_found = set(), set()
        pairs, lost = _match(expected, found, taken_expected, taken_found, confident_score)
        reverse, appeared = _match(found, expected, taken_found, taken_expected, confident_score)
        pairs += [(i, j) for j, i in reverse]
        score_gaps += [abs(float(expected[2][i]) - float(found[2][j])) for i, j in pairs]
        box_gaps += [float(np.abs(expected[1][i] - found[1][j]).max()) / max(size) for i, j in pairs]
        unpaired.append((lost, appeared))
    largest_gap = max(score_gaps, default=0.0)
    unmatched, at_cut = [], 0
    for index, (expected, found, (lost, appeared)) in enumerate(zip(reference, other, unpaired)):
        lost_beyond_cut = [i for i in lost if expected[2][i] > _cut(found[2]) + largest_gap]
        appeared_beyond_cut = [j for j in appeared if found[2][j] > _cut(expected[2]) + largest_gap]
        at_cut += len(lost) + len(appeared) - len(lost_beyond_cut) - len(appeared_beyond_cut)
        unmatched += [f"image {index}: class {expected[0][i]} at {expected[2][i]:.2f} {np.round(expected[1][i], 1)} "
                      "of the reference has no counterpart" for i in lost_beyond_cut]
        unmatched += [f"image {index}: class {found[0][j]} at {found[2][j]:.2f} {np.round(found[1][j], 1)} "
                      "appears only in the other run" for j in appeared_beyond_cut]
    if not score_gaps:
        return Agreement(unmatched=unmatched, at_cut=at_cut)
    return Agreement(pairs=len(score_gaps), unmatched=unmatched, at_cut=at_cut,
                     score_p99=float(np.percentile(score_gaps, 99)), score_max=max(score_gaps),
                     box_p99=float(np.percentile(box_gaps, 99)), box_max=max(box_gaps))
