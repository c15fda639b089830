"""Set losses: near zero on perfect predictions, growing with error; denoising groups and their masks."""

import pytest
import torch

from detr_ros.modeling.box_ops import inverse_sigmoid
from detr_ros.modeling.denoising import make_denoising_queries
from detr_ros.training.criterion import SetCriterion, denoising_indices
from detr_ros.training.matcher import HungarianMatcher

NUM_CLASSES = 3
QUERIES = 6
TARGETS = [
    {"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.7, 0.6, 0.3, 0.4]])},
    {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.5, 0.5, 0.4, 0.2]])},
]


def _criterion(class_loss):
    score = "softmax" if class_loss == "ce" else "focal"
    return SetCriterion(HungarianMatcher(2.0, 5.0, 2.0, class_score=score), NUM_CLASSES, class_loss=class_loss,
                        class_weight=1.0, bbox_weight=5.0, giou_weight=2.0, alpha=0.75, gamma=2.0, eos_coef=0.1)


def _predictions(class_loss, box_shift=0.0, wrong_class=False, confidence=12.0):
    """Queries 0.. hold the targets (optionally shifted / mislabelled), the rest confidently say nothing."""
    channels = NUM_CLASSES + 1 if class_loss == "ce" else NUM_CLASSES
    logits = torch.full((len(TARGETS), QUERIES, channels), -confidence)
    boxes = torch.full((len(TARGETS), QUERIES, 4), 0.1)
    boxes[..., :2] = 0.9
    if class_loss == "ce":
        logits[..., -1] = confidence
    for i, target in enumerate(TARGETS):
        for j, (label, box) in enumerate(zip(target["labels"], target["boxes"])):
            label = (label + 1) % NUM_CLASSES if wrong_class else label
            logits[i, j] = -confidence
            logits[i, j, label] = confidence
            boxes[i, j] = box + torch.tensor([box_shift, box_shift, 0.0, 0.0])
    return {"pred_logits": logits, "pred_boxes": boxes}


@pytest.mark.parametrize("class_loss", ["vfl", "focal", "ce"])
def test_perfect_predictions_cost_almost_nothing(class_loss):
    losses = _criterion(class_loss)(_predictions(class_loss), TARGETS)
    assert set(losses) == {f"loss_{class_loss}", "loss_bbox", "loss_giou"}
    assert sum(losses.values()).item() < 1e-3


@pytest.mark.parametrize("class_loss", ["vfl", "focal", "ce"])
def test_losses_grow_with_the_error(class_loss):
    criterion = _criterion(class_loss)
    box_losses = [criterion(_predictions(class_loss, box_shift=s), TARGETS) for s in (0.0, 0.02, 0.05, 0.1)]
    for kind in ("loss_bbox", "loss_giou"):
        values = [losses[kind].item() for losses in box_losses]
        assert values == sorted(values) and values[-1] > values[0] + 0.1, (kind, values)
    right = criterion(_predictions(class_loss), TARGETS)[f"loss_{class_loss}"]
    wrong = criterion(_predictions(class_loss, wrong_class=True), TARGETS)[f"loss_{class_loss}"]
    assert wrong > right + 1.0


def test_varifocal_target_is_the_iou():
    # A right-class query whose box is half off: VFL is lowest when its score equals its IoU, not 1.
    criterion = _criterion("vfl")
    outputs = _predictions("vfl", box_shift=0.05)
    matched = criterion.matcher(outputs, TARGETS)

    def class_loss_at(probability):
        logits = outputs["pred_logits"].clone()
        for i, (pred_idx, target_idx) in enumerate(matched):
            logits[i, pred_idx, TARGETS[i]["labels"][target_idx]] = inverse_sigmoid(torch.tensor(probability))
        return criterion.class_losses({**outputs, "pred_logits": logits}, TARGETS, matched, 3.0).item()

    losses = {p: class_loss_at(p) for p in (0.3, 0.5, 0.7, 0.95)}
    best = min(losses, key=losses.get)
    assert 0.3 < best < 0.95, losses


def test_aux_encoder_and_denoising_sets_are_all_scored():
    criterion = _criterion("vfl")
    perfect, off = _predictions("vfl"), _predictions("vfl", box_shift=0.1)
    dn_meta = {"dn_positive_idx": [torch.tensor([0, 1, 4, 5]), torch.tensor([0, 4])], "dn_num_group": 2,
               "dn_num_split": [8, QUERIES]}
    dn_perfect = _denoising_outputs(dn_meta, shift=0.0)
    outputs = {**perfect, "aux_outputs": [off, perfect], "enc_aux_outputs": [off],
               "dn_aux_outputs": [dn_perfect, _denoising_outputs(dn_meta, shift=0.1)], "dn_meta": dn_meta}
    losses = criterion(outputs, TARGETS)
    suffixes = {"", "_aux_0", "_aux_1", "_enc_0", "_dn_0", "_dn_1"}
    assert set(losses) == {f"loss_{k}{s}" for k in ("vfl", "bbox", "giou") for s in suffixes}
    for suffix, is_perfect in (("", True), ("_aux_0", False), ("_aux_1", True), ("_enc_0", False),
                               ("_dn_0", True), ("_dn_1", False)):
        assert (losses[f"loss_bbox{suffix}"].item() < 1e-4) == is_perfect, suffix


def _denoising_outputs(dn_meta, shift):
    """Denoising predictions where every positive query reconstructs its target (shifted by ``shift``)."""
    num_dn = dn_meta["dn_num_split"][0]
    logits = torch.full((len(TARGETS), num_dn, NUM_CLASSES), -12.0)
    boxes = torch.full((len(TARGETS), num_dn, 4), 0.1)
    for i, (query_idx, target_idx) in enumerate(denoising_indices(dn_meta, TARGETS)):
        logits[i, query_idx, TARGETS[i]["labels"][target_idx]] = 12.0
        boxes[i, query_idx] = TARGETS[i]["boxes"][target_idx] + torch.tensor([shift, shift, 0.0, 0.0])
    return {"pred_logits": logits, "pred_boxes": boxes}


def test_denoising_groups_have_the_documented_layout_and_masks():
    num_queries, num_denoising = 10, 9
    embed = torch.nn.Embedding(NUM_CLASSES + 1, 8, padding_idx=NUM_CLASSES)
    torch.manual_seed(0)
    _, boxes_unact, mask, dn_meta = make_denoising_queries(
        TARGETS, NUM_CLASSES, num_queries, embed, num_denoising, label_noise_ratio=0.0, box_noise_scale=0.0)
    max_gt = 2
    groups = num_denoising // max_gt  # 4 groups of 2 positive + 2 negative slots
    group_size = 2 * max_gt
    total = groups * group_size
    assert dn_meta["dn_num_group"] == groups and dn_meta["dn_num_split"] == [total, num_queries]
    assert mask.shape == (total + num_queries, total + num_queries)
    # Matching queries never see denoising queries, but see each other.
    assert mask[total:, :total].all() and not mask[total:, total:].any()
    for g in range(groups):
        rows = slice(g * group_size, (g + 1) * group_size)
        own = torch.zeros(total + num_queries, dtype=torch.bool)
        own[rows] = True
        own[total:] = True  # denoising queries may look at the matching queries
        assert torch.equal(mask[rows], (~own).expand(group_size, -1)), g
    # Positive slots: the first n of each group's first half; without noise they hold the targets.
    expected = [torch.tensor([g * group_size + j for g in range(groups) for j in range(len(t["labels"]))])
                for t in TARGETS]
    for image, (positive, target) in enumerate(zip(dn_meta["dn_positive_idx"], TARGETS)):
        assert torch.equal(positive, expected[image])
        query_idx, target_idx = denoising_indices(dn_meta, TARGETS)[image]
        assert torch.allclose(boxes_unact[image, query_idx].sigmoid(), target["boxes"][target_idx], atol=1e-5)
