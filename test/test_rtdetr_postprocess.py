"""Post-processing with the official RT-DETR deploy semantics, on small hand-checked examples."""

import math

import pytest
import torch

from detr_ros.modeling.postprocess import PostProcessor, postprocess


def logit(p):
    return math.log(p / (1 - p))


def test_sigmoid_topk_over_queries_and_classes_in_original_pixels():
    # 2 queries x 3 classes. Scores: q0 = (0.9, 0.2, 0.7), q1 = (0.1, 0.8, 0.3).
    scores = [[0.9, 0.2, 0.7], [0.1, 0.8, 0.3]]
    logits = torch.tensor([[[logit(p) for p in row] for row in scores]])
    # q0 centred (0.5, 0.5) of size (0.2, 0.4); q1 at (0.25, 0.75) of size (0.5, 0.5).
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.4], [0.25, 0.75, 0.5, 0.5]]])
    sizes = torch.tensor([[200, 100]])  # (width, height)
    labels, out_boxes, out_scores = postprocess(logits, boxes, sizes, num_top_queries=4)
    # Best four (query, class) pairs: (q0, 0) .9, (q1, 1) .8, (q0, 2) .7, (q1, 2) .3.
    assert labels.tolist() == [[0, 1, 2, 2]]
    assert torch.allclose(out_scores, torch.tensor([[0.9, 0.8, 0.7, 0.3]]))
    q0 = [80.0, 30.0, 120.0, 70.0]  # x: 0.4..0.6 of 200, y: 0.3..0.7 of 100
    q1 = [0.0, 50.0, 100.0, 100.0]  # x: 0..0.5 of 200, y: 0.5..1.0 of 100
    assert torch.allclose(out_boxes, torch.tensor([[q0, q1, q0, q1]]))
    assert labels.dtype == torch.int64


def test_k_is_capped_and_batches_use_their_own_sizes():
    logits = torch.zeros(2, 3, 2)
    boxes = torch.full((2, 3, 4), 0.5)
    labels, out_boxes, scores = postprocess(logits, boxes, torch.tensor([[10, 20], [30, 40]]), num_top_queries=300)
    assert labels.shape == (2, 6) and scores.shape == (2, 6)
    assert torch.allclose(out_boxes[0, 0], torch.tensor([2.5, 5.0, 7.5, 15.0]))
    assert torch.allclose(out_boxes[1, 0], torch.tensor([7.5, 10.0, 22.5, 30.0]))


def test_softmax_mode_drops_no_object_and_keeps_one_class_per_query():
    probabilities = torch.tensor([[[0.1, 0.6, 0.3], [0.7, 0.1, 0.2], [0.05, 0.05, 0.9]]])
    boxes = torch.tensor([[[0.5, 0.5, 1.0, 1.0]] * 3])
    module = PostProcessor(num_top_queries=2, score_mode="softmax")
    labels, out_boxes, scores = module(
        {"pred_logits": probabilities.log(), "pred_boxes": boxes}, torch.tensor([[4, 2]])
    )
    # Query 2's best is no-object (last column); its best real class scores only 0.05.
    assert labels.tolist() == [[0, 1]]
    assert torch.allclose(scores, torch.tensor([[0.7, 0.6]]))
    assert torch.allclose(out_boxes[0, 0], torch.tensor([0.0, 0.0, 4.0, 2.0]))
    with pytest.raises(ValueError, match="score_mode"):
        postprocess(probabilities, boxes, torch.tensor([[4, 2]]), score_mode="argmax")
