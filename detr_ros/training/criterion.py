"""Set-prediction losses of DETR and RT-DETR.

For each output set (the final decoder layer, every earlier layer, RT-DETR's encoder
proposals and its denoising groups) predictions are paired with targets (Hungarian
matching, or for denoising the known query -> target pairing in ``dn_meta``) and scored by
- a class loss: ``vfl`` varifocal (RT-DETR: the target score of a matched query is its
  IoU with the target, so scores rank boxes by quality), ``focal`` (sigmoid focal), or
  ``ce`` (DETR: softmax cross-entropy with the no-object class down-weighted by eos_coef);
- ``bbox``: L1 on normalised cxcywh boxes, and ``giou``: 1 - generalized IoU.
Losses are summed over boxes and divided by the number of target boxes in the whole
(distributed) batch, so every image weighs by its objects, as in the official code.
"""

import torch
import torch.nn.functional as F
from torch import distributed as dist
from torchvision.ops import sigmoid_focal_loss

from detr_ros.modeling.box_ops import box_cxcywh_to_xyxy, box_iou, generalized_box_iou

CLASS_LOSSES = ("vfl", "focal", "ce")


def _matched(indices):
    """Per-image (pred_idx, target_idx) -> (batch_idx [K], pred_idx [K]) to index [B, Q, ...] tensors."""
    batch_idx = torch.cat([torch.full_like(pred, i) for i, (pred, _) in enumerate(indices)])
    pred_idx = torch.cat([pred for pred, _ in indices])
    return batch_idx, pred_idx


def denoising_indices(dn_meta, targets):
    """The fixed pairing of denoising queries with targets: per image (query_idx, target_idx).

    Positive denoising queries of group g reconstruct targets 0..n-1 in order, so
    target_idx is arange(n) repeated once per group.
    """
    indices = []
    for positive_idx, target in zip(dn_meta["dn_positive_idx"], targets):
        count = len(target["labels"])
        target_idx = torch.arange(count, device=positive_idx.device).repeat(dn_meta["dn_num_group"])
        if len(target_idx) != len(positive_idx):
            raise ValueError(f"dn_meta has {len(positive_idx)} positive queries for {count} targets "
                             f"x {dn_meta['dn_num_group']} groups")
        indices.append((positive_idx.long(), target_idx))
    return indices


class SetCriterion(torch.nn.Module):
    """outputs (the model's dict), targets (list of per-image dicts) -> {loss name: weighted loss}.

    Names: loss_<kind> for the final layer, loss_<kind>_aux_<i>, loss_<kind>_enc_<i>,
    loss_<kind>_dn_<i> for the others; kinds: the class loss (vfl/focal/ce), bbox, giou.
    The training loss is the sum of all values.
    """

    def __init__(self, matcher, num_classes, *, class_loss, class_weight, bbox_weight, giou_weight,
                 alpha=0.75, gamma=2.0, eos_coef=0.1):
        super().__init__()
        if class_loss not in CLASS_LOSSES:
            raise ValueError(f"class_loss must be one of {CLASS_LOSSES}, got {class_loss!r}")
        self.matcher = matcher
        self.num_classes = num_classes
        self.class_loss = class_loss
        self.weights = {class_loss: class_weight, "bbox": bbox_weight, "giou": giou_weight}
        self.alpha, self.gamma = alpha, gamma
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight)

    @classmethod
    def from_model_config(cls, config, matcher):
        """The losses of ``config.architecture`` with the weights in a ModelConfig."""
        return cls(
            matcher, config.num_classes,
            class_loss="vfl" if config.architecture == "rtdetr" else "ce",
            class_weight=config.loss_class_weight, bbox_weight=config.loss_bbox_weight,
            giou_weight=config.loss_giou_weight, alpha=config.focal_alpha, gamma=config.focal_gamma,
            eos_coef=config.eos_coef,
        )

    def class_losses(self, outputs, targets, indices, num_boxes):
        logits = outputs["pred_logits"]  # [B, Q, C] (ce: C + 1)
        batch_idx, pred_idx = _matched(indices)
        matched_labels = torch.cat([t["labels"][j] for t, (_, j) in zip(targets, indices)])
        if self.class_loss == "ce":
            classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
            classes[batch_idx, pred_idx] = matched_labels
            return F.cross_entropy(logits.transpose(1, 2), classes, self.empty_weight)
        one_hot = torch.zeros_like(logits)
        one_hot[batch_idx, pred_idx, matched_labels] = 1.0
        if self.class_loss == "focal":
            return sigmoid_focal_loss(logits, one_hot, self.alpha, self.gamma, reduction="sum") / num_boxes
        matched_boxes = outputs["pred_boxes"][batch_idx, pred_idx]
        target_boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)])
        iou = torch.diag(box_iou(box_cxcywh_to_xyxy(matched_boxes), box_cxcywh_to_xyxy(target_boxes))[0]).detach()
        quality = torch.zeros(logits.shape[:2], dtype=logits.dtype, device=logits.device)
        quality[batch_idx, pred_idx] = iou.to(logits.dtype)
        target_score = one_hot * quality[..., None]
        # Negatives are weighted by how confident they are (focal-style); positives by their IoU.
        weight = self.alpha * logits.sigmoid().detach().pow(self.gamma) * (1 - one_hot) + target_score
        loss = F.binary_cross_entropy_with_logits(logits, target_score, weight=weight, reduction="sum")
        return loss / num_boxes

    def box_losses(self, outputs, targets, indices, num_boxes):
        batch_idx, pred_idx = _matched(indices)
        boxes = outputs["pred_boxes"][batch_idx, pred_idx]
        target_boxes = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)])
        l1 = F.l1_loss(boxes, target_boxes, reduction="sum") / num_boxes
        giou = torch.diag(generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target_boxes)))
        return l1, (1 - giou).sum() / num_boxes

    def set_losses(self, outputs, targets, indices, num_boxes, suffix=""):
        l1, giou = self.box_losses(outputs, targets, indices, num_boxes)
        raw = {self.class_loss: self.class_losses(outputs, targets, indices, num_boxes), "bbox": l1, "giou": giou}
        return {f"loss_{kind}{suffix}": self.weights[kind] * value for kind, value in raw.items()}

    def forward(self, outputs, targets):
        num_boxes = self.count_boxes(targets, outputs["pred_boxes"].device)
        losses = self.set_losses(outputs, targets, self.matcher(outputs, targets), num_boxes)
        for group, output_sets in (("aux", outputs.get("aux_outputs", [])), ("enc", outputs.get("enc_aux_outputs", []))):
            for i, layer_outputs in enumerate(output_sets):
                losses.update(self.set_losses(layer_outputs, targets, self.matcher(layer_outputs, targets),
                                              num_boxes, f"_{group}_{i}"))
        if "dn_aux_outputs" in outputs:
            dn_meta = outputs["dn_meta"]
            indices = denoising_indices(dn_meta, targets)
            dn_boxes = num_boxes * dn_meta["dn_num_group"]
            for i, layer_outputs in enumerate(outputs["dn_aux_outputs"]):
                losses.update(self.set_losses(layer_outputs, targets, indices, dn_boxes, f"_dn_{i}"))
        return losses

    @staticmethod
    def count_boxes(targets, device):
        """Target boxes in the whole batch, summed over all ranks of a distributed run (at least 1)."""
        count = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(count)
            count = count / dist.get_world_size()
        return count.clamp(min=1.0).item()
