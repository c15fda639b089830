"""Hungarian matching of predictions to ground truth (one prediction per target, optimal in sum).

The cost of pairing prediction i with target j is
    class_cost * C_class(i, j) + bbox_cost * L1(box_i, box_j) - giou_cost * GIoU(box_i, box_j)
and scipy's ``linear_sum_assignment`` solves the assignment per image.

Why two class costs:
- RT-DETR scores each class with an independent sigmoid trained by a focal-style loss. Its
  class cost is the focal loss of calling i "class j" minus the focal loss of calling it
  background, which is exactly how much the training loss would change by matching i to j;
  the (1 - p)^gamma / p^gamma factors keep confident, already-right queries cheap.
- DETR's softmax shares probability between the classes and the no-object class, so
  -log p would explode for queries that currently say "nothing" and swamp the box costs;
  the DETR paper uses 1 - p, which stays in [0, 1] on the scale of the box terms.
"""

import torch
from scipy.optimize import linear_sum_assignment

from detr_ros.modeling.box_ops import box_cxcywh_to_xyxy, generalized_box_iou


class HungarianMatcher:
    """Callable (outputs, targets) -> list per image of (pred_idx LongTensor[k], target_idx LongTensor[k]).

    outputs: {"pred_logits": [B, Q, C], "pred_boxes": [B, Q, 4] cxcywh}
    targets: list of {"labels": LongTensor[n], "boxes": FloatTensor[n, 4] cxcywh}
    class_score: "focal" (sigmoid logits, RT-DETR) or "softmax" (DETR, last class = no object).
    """

    def __init__(self, class_cost, bbox_cost, giou_cost, *, class_score="focal", alpha=0.25, gamma=2.0):
        if class_score not in ("focal", "softmax"):
            raise ValueError(f"class_score must be 'focal' or 'softmax', got {class_score!r}")
        self.class_cost, self.bbox_cost, self.giou_cost = class_cost, bbox_cost, giou_cost
        self.class_score = class_score
        self.alpha, self.gamma = alpha, gamma

    def class_costs(self, logits, labels):
        """logits [N, C], labels [M] -> cost [N, M]."""
        if self.class_score == "softmax":
            return 1.0 - logits.softmax(-1)[:, labels]
        prob = logits.sigmoid()[:, labels]
        positive = self.alpha * (1 - prob) ** self.gamma * -(prob + 1e-8).log()
        negative = (1 - self.alpha) * prob ** self.gamma * -(1 - prob + 1e-8).log()
        return positive - negative

    def cost_matrix(self, logits, boxes, target_labels, target_boxes):
        """One image: logits [Q, C], boxes [Q, 4], target_labels [M], target_boxes [M, 4] -> [Q, M]."""
        box_l1 = torch.cdist(boxes, target_boxes, p=1)
        giou = generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target_boxes))
        return (self.class_cost * self.class_costs(logits, target_labels)
                + self.bbox_cost * box_l1 - self.giou_cost * giou)

    @torch.no_grad()
    def __call__(self, outputs, targets):
        logits = outputs["pred_logits"].float()
        boxes = outputs["pred_boxes"].float()
        indices = []
        for i, target in enumerate(targets):
            if len(target["labels"]) == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                indices.append((empty, empty))
                continue
            cost = self.cost_matrix(logits[i], boxes[i], target["labels"], target["boxes"].float())
            pred_idx, target_idx = linear_sum_assignment(cost.cpu().numpy())
            indices.append((torch.as_tensor(pred_idx, dtype=torch.int64), torch.as_tensor(target_idx, dtype=torch.int64)))
        return indices
