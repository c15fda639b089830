"""Bounding-box conversions and overlap measures used by the models, the losses and evaluation.

Boxes are either ``cxcywh`` (centre x, centre y, width, height) or ``xyxy`` (x0, y0, x1, y1),
normalised to [0, 1] or in pixels; the functions don't care which, as long as both operands agree.
"""

import torch


def box_cxcywh_to_xyxy(boxes):
    """Centre/size boxes to corner boxes.

    boxes: [..., 4] as (cx, cy, w, h) -> [..., 4] as (x0, y0, x1, y1)
    """
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes):
    """Corner boxes to centre/size boxes.

    boxes: [..., 4] as (x0, y0, x1, y1) -> [..., 4] as (cx, cy, w, h)
    """
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes):
    """Area of corner boxes: [N, 4] -> [N]."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1, boxes2):
    """Pairwise intersection over union of two sets of corner boxes.

    boxes1: [N, 4] xyxy, boxes2: [M, 4] xyxy
    Returns (iou [N, M], union [N, M]); the union is returned too because
    generalized_box_iou needs it.
    """
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    top_left = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    intersection_wh = (bottom_right - top_left).clamp(min=0)
    intersection = intersection_wh[..., 0] * intersection_wh[..., 1]
    union = area1[:, None] + area2[None, :] - intersection
    return intersection / union, union


def generalized_box_iou(boxes1, boxes2):
    """Pairwise generalized IoU (https://giou.stanford.edu/) of two sets of corner boxes.

    boxes1: [N, 4] xyxy, boxes2: [M, 4] xyxy -> [N, M] in [-1, 1].
    Degenerate boxes (x1 < x0 or y1 < y0) would give meaningless values, so they are refused.
    """
    if not (boxes1[:, 2:] >= boxes1[:, :2]).all():
        raise ValueError("generalized_box_iou: boxes1 has boxes with x1 < x0 or y1 < y0")
    if not (boxes2[:, 2:] >= boxes2[:, :2]).all():
        raise ValueError("generalized_box_iou: boxes2 has boxes with x1 < x0 or y1 < y0")
    iou, union = box_iou(boxes1, boxes2)
    top_left = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    enclosing_wh = (bottom_right - top_left).clamp(min=0)
    enclosing_area = enclosing_wh[..., 0] * enclosing_wh[..., 1]
    return iou - (enclosing_area - union) / enclosing_area


def inverse_sigmoid(x, eps=1e-5):
    """Logit of a probability, clamped so that 0 and 1 stay finite: [...] -> [...]."""
    x = x.clamp(min=0.0, max=1.0)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))
