"""Detections from raw model outputs, with the official RT-DETR deploy semantics.

Used inside the exported ONNX graph and by PyTorch evaluation, so that both give the same boxes:
sigmoid scores, top-K over the flattened (query, class) pairs (a query may yield several
detections of different classes), boxes converted to xyxy in original-image pixels.
"""

import torch
from torch import nn

from detr_ros.modeling.box_ops import box_cxcywh_to_xyxy


def postprocess(pred_logits, pred_boxes, orig_target_sizes, num_top_queries=300, score_mode="sigmoid"):
    """Top-scoring detections per image.

    pred_logits: [B, Q, C] class logits; pred_boxes: [B, Q, 4] cxcywh in [0, 1]
    orig_target_sizes: [B, 2] (width, height) of the original images, any numeric dtype
    score_mode: "sigmoid" (RT-DETR: top-K over queries x classes) or "softmax" (DETR: the last
        class is "no object"; each query keeps its best class, then top-K over queries)
    Returns (labels int64 [B, K], boxes float32 [B, K, 4] xyxy in pixels, scores [B, K]) with
    K = min(num_top_queries, Q * C) resp. min(num_top_queries, Q), sorted by decreasing score.
    """
    scale = orig_target_sizes.to(pred_boxes.dtype).repeat(1, 2).unsqueeze(1)
    boxes = box_cxcywh_to_xyxy(pred_boxes) * scale
    if score_mode == "softmax":
        scores, labels = pred_logits.softmax(-1)[..., :-1].max(-1)
        k = min(num_top_queries, scores.shape[1])
        scores, index = torch.topk(scores, k, dim=-1)
        labels = labels.gather(1, index)
    elif score_mode == "sigmoid":
        num_classes = pred_logits.shape[-1]
        k = min(num_top_queries, pred_logits.shape[1] * num_classes)
        scores, index = torch.topk(pred_logits.sigmoid().flatten(1), k, dim=-1)
        # a - a // b * b rather than %: older TensorRT versions lack an integer Mod.
        labels = index - index // num_classes * num_classes
        index = index // num_classes
    else:
        raise ValueError(f"score_mode must be 'sigmoid' or 'softmax', got {score_mode!r}")
    boxes = boxes.gather(1, index.unsqueeze(-1).expand(-1, -1, 4))
    return labels, boxes, scores


class PostProcessor(nn.Module):
    """postprocess() as a module, to append to a model for export.

    outputs: model output dict with pred_logits and pred_boxes; orig_target_sizes: [B, 2] (W, H)
    -> (labels [B, K], boxes [B, K, 4], scores [B, K])
    """

    def __init__(self, num_top_queries=300, score_mode="sigmoid"):
        super().__init__()
        self.num_top_queries = num_top_queries
        self.score_mode = score_mode

    def forward(self, outputs, orig_target_sizes):
        return postprocess(
            outputs["pred_logits"], outputs["pred_boxes"], orig_target_sizes, self.num_top_queries, self.score_mode
        )
