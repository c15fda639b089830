"""Contrastive denoising query groups for RT-DETR training (DINO-style, as in lyuwenyu/RT-DETR).

Each ground-truth box enters the decoder as extra queries in several groups: a positive copy with
small box noise (to be reconstructed) and a negative copy with larger noise (to be rejected), some
with a randomly flipped label. An attention mask keeps the matching queries from seeing the
denoising ones and the groups from seeing each other.
"""

import torch

from detr_ros.modeling.box_ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh, inverse_sigmoid


def make_denoising_queries(
    targets, num_classes, num_queries, class_embed, num_denoising=100, label_noise_ratio=0.5, box_noise_scale=1.0
):
    """Build the denoising queries of one batch.

    targets: list (per image) of {"labels": LongTensor[n], "boxes": FloatTensor[n, 4] cxcywh in [0, 1]}
    class_embed: nn.Embedding(num_classes + 1, D) whose last row (padding) marks empty slots
    Returns None when there is nothing to denoise (num_denoising <= 0 or no boxes in the batch), else
    (query_content [B, N_dn, D], query_boxes_unact [B, N_dn, 4] (logits of cxcywh),
     attn_mask [N_dn + num_queries, N_dn + num_queries] bool (True = may not attend),
     dn_meta {"dn_positive_idx": list of LongTensor, "dn_num_group": int,
              "dn_num_split": [N_dn, num_queries]}).
    """
    if num_denoising <= 0:
        return None
    num_gts = [len(t["labels"]) for t in targets]
    max_gt = max(num_gts, default=0)
    if max_gt == 0:
        return None
    device = targets[0]["labels"].device
    num_groups = max(num_denoising // max_gt, 1)
    batch = len(targets)

    labels = torch.full([batch, max_gt], num_classes, dtype=torch.int64, device=device)
    boxes = torch.zeros([batch, max_gt, 4], device=device)
    is_real = torch.zeros([batch, max_gt], dtype=torch.bool, device=device)
    for i, (target, count) in enumerate(zip(targets, num_gts)):
        labels[i, :count] = target["labels"]
        boxes[i, :count] = target["boxes"]
        is_real[i, :count] = True

    # Each group: max_gt positive slots then max_gt negative slots.
    labels = labels.tile([1, 2 * num_groups])
    boxes = boxes.tile([1, 2 * num_groups, 1])
    is_real = is_real.tile([1, 2 * num_groups])
    is_negative = torch.zeros([batch, 2 * max_gt, 1], device=device)
    is_negative[:, max_gt:] = 1
    is_negative = is_negative.tile([1, num_groups, 1])
    positive = (1 - is_negative.squeeze(-1)) * is_real
    dn_positive_idx = torch.nonzero(positive)[:, 1].split([n * num_groups for n in num_gts])
    total = 2 * max_gt * num_groups

    if label_noise_ratio > 0:
        flip = torch.rand(labels.shape, device=device) < label_noise_ratio * 0.5
        random_labels = torch.randint_like(labels, 0, num_classes)
        labels = torch.where(flip & is_real, random_labels, labels)

    if box_noise_scale > 0:
        corners = box_cxcywh_to_xyxy(boxes)
        half_size = boxes[..., 2:].tile([1, 1, 2]) * 0.5 * box_noise_scale
        sign = torch.randint_like(boxes, 0, 2) * 2.0 - 1.0
        # Positives move by less than half their size, negatives by between one and two halves.
        magnitude = torch.rand_like(boxes) + is_negative
        corners = (corners + sign * magnitude * half_size).clip(0.0, 1.0)
        boxes = box_xyxy_to_cxcywh(corners)
    boxes_unact = inverse_sigmoid(boxes)

    size = total + num_queries
    attn_mask = torch.zeros([size, size], dtype=torch.bool, device=device)
    attn_mask[total:, :total] = True
    group_size = 2 * max_gt
    for group in range(num_groups):
        start, end = group * group_size, (group + 1) * group_size
        attn_mask[start:end, :start] = True
        attn_mask[start:end, end:total] = True

    dn_meta = {"dn_positive_idx": list(dn_positive_idx), "dn_num_group": num_groups, "dn_num_split": [total, num_queries]}
    return class_embed(labels), boxes_unact, attn_mask, dn_meta
