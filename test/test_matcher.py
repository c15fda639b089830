"""Hungarian matcher: optimal on hand-made costs, sensible class costs for both score kinds."""

import itertools

import torch

from detr_ros.training.matcher import HungarianMatcher


def _brute_force_min(cost):
    """Smallest total cost over every assignment of the columns to distinct rows."""
    rows, cols = cost.shape
    return min(sum(cost[r, c] for r, c in zip(perm, range(cols))) for perm in itertools.permutations(range(rows), cols))


def test_assignment_is_optimal_where_greedy_is_not():
    # Greedy (cheapest pair first) takes (0, 0) = 1, then must pay 100 for (1, 1): total 101.
    # The optimum is (0, 1) + (1, 0) = 2 + 2 = 4.
    cost = torch.tensor([[1.0, 2.0], [2.0, 100.0]])
    matcher = HungarianMatcher(1.0, 0.0, 0.0)
    matcher.cost_matrix = lambda *args: cost
    outputs = {"pred_logits": torch.zeros(1, 2, 3), "pred_boxes": torch.full((1, 2, 4), 0.5)}
    targets = [{"labels": torch.tensor([0, 1]), "boxes": torch.full((2, 4), 0.5)}]
    (pred_idx, target_idx), = matcher(outputs, targets)
    assert sorted(zip(pred_idx.tolist(), target_idx.tolist())) == [(0, 1), (1, 0)]


def test_random_costs_match_brute_force():
    generator = torch.Generator().manual_seed(0)
    matcher = HungarianMatcher(1.0, 0.0, 0.0)
    for queries, num_targets in ((4, 3), (6, 6), (7, 2)):
        cost = torch.rand(queries, num_targets, generator=generator)
        matcher.cost_matrix = lambda *args, cost=cost: cost
        outputs = {"pred_logits": torch.zeros(1, queries, 2), "pred_boxes": torch.full((1, queries, 4), 0.5)}
        targets = [{"labels": torch.zeros(num_targets, dtype=torch.int64), "boxes": torch.full((num_targets, 4), 0.5)}]
        (pred_idx, target_idx), = matcher(outputs, targets)
        assert len(set(pred_idx.tolist())) == num_targets and sorted(target_idx.tolist()) == list(range(num_targets))
        assert torch.isclose(cost[pred_idx, target_idx].sum(), torch.tensor(float(_brute_force_min(cost))))


def _boxes(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_boxes_and_classes_pick_the_right_queries():
    # Three queries: q0 sits on target B with B's class, q1 on target A with A's class, q2 elsewhere.
    target_boxes = _boxes([0.25, 0.25, 0.2, 0.2], [0.7, 0.7, 0.3, 0.3])  # A, B
    pred_boxes = _boxes([0.7, 0.7, 0.3, 0.3], [0.26, 0.25, 0.2, 0.21], [0.5, 0.1, 0.1, 0.1])
    logits = torch.full((3, 4), -6.0)
    logits[0, 2] = logits[1, 1] = 6.0  # q0 says class 2 (B's), q1 says class 1 (A's)
    targets = [{"labels": torch.tensor([1, 2]), "boxes": target_boxes}]
    for score, logit_fill in (("focal", logits), ("softmax", torch.cat([logits, torch.zeros(3, 1)], dim=1))):
        matcher = HungarianMatcher(2.0, 5.0, 2.0, class_score=score)
        outputs = {"pred_logits": logit_fill[None], "pred_boxes": pred_boxes[None]}
        (pred_idx, target_idx), = matcher(outputs, targets)
        assert dict(zip(target_idx.tolist(), pred_idx.tolist())) == {0: 1, 1: 0}, score


def test_focal_class_cost_prefers_confident_right_class():
    matcher = HungarianMatcher(1.0, 0.0, 0.0, class_score="focal")
    logits = torch.tensor([[4.0, -4.0], [-4.0, 4.0], [0.0, 0.0]])
    cost = matcher.class_costs(logits, torch.tensor([0]))[:, 0]
    assert cost[0] < cost[2] < cost[1]


def test_images_without_targets_match_nothing():
    matcher = HungarianMatcher(2.0, 5.0, 2.0)
    outputs = {"pred_logits": torch.zeros(2, 5, 3), "pred_boxes": torch.full((2, 5, 4), 0.5)}
    targets = [{"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
               {"labels": torch.tensor([2]), "boxes": _boxes([0.5, 0.5, 0.2, 0.2])}]
    indices = matcher(outputs, targets)
    assert [len(p) for p, _ in indices] == [0, 1]
