"""Multi-scale deformable attention (Deformable DETR), in plain PyTorch with grid_sample.

Each query looks at a few sampled points per feature level and attention head, placed around its
reference box by learned offsets, and mixes them with learned softmax weights. RT-DETR v2 allows
a different number of points per level and a "discrete" sampling method (nearest feature cell
instead of bilinear interpolation), which avoids grid_sample on deployment targets without it.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from detr_ros.modeling.config import SAMPLING_METHODS


def sample_multi_scale(value_maps, spatial_shapes, sampling_locations, attention_weights, num_points_list, method):
    """Weighted sum of the value maps at the sampling locations.

    value_maps: list of [B, n_heads * head_dim, H_l, W_l] (or flattened to H_l * W_l), one a level,
        heads major in the channels
    spatial_shapes: list of (H_l, W_l); ints where the input size is fixed, so that a fixed-size
        export never computes the maps' sizes
    sampling_locations: [B, Q, n_heads, sum(num_points_list), 2] as (x, y) in [0, 1]
    attention_weights: [B, Q, n_heads, sum(num_points_list)]
    Returns [B, Q, n_heads * head_dim].
    """
    batch, num_queries, n_heads = sampling_locations.shape[:3]
    # [B * n_heads, Q, points, 2]
    locations = sampling_locations.permute(0, 2, 1, 3, 4).flatten(0, 1)
    if method == "default":
        locations = 2 * locations - 1
    per_level = locations.split(num_points_list, dim=-2)

    sampled = []
    for level, (value_map, (height, width)) in enumerate(zip(value_maps, spatial_shapes)):
        value_map = value_map.reshape(batch * n_heads, -1, height, width)  # [B * n_heads, head_dim, H, W]
        if method == "default":
            sampled.append(
                F.grid_sample(value_map, per_level[level], mode="bilinear", padding_mode="zeros", align_corners=False)
            )
            continue
        # Discrete: the cell containing the point. x is clamped to the width and y to the height
        # (the official code clamps both to the height, which is wrong on rectangular maps).
        scale = torch.tensor([width, height], device=value_map.device, dtype=per_level[level].dtype)
        cell = (per_level[level] * scale + 0.5).to(torch.int64)
        x = cell[..., 0].clamp(0, width - 1)
        y = cell[..., 1].clamp(0, height - 1)
        flat_index = (y * width + x).flatten(1)  # [B * n_heads, Q * points]
        gathered = value_map.flatten(2).gather(2, flat_index[:, None, :].expand(-1, value_map.shape[1], -1))
        sampled.append(gathered.reshape(batch * n_heads, -1, num_queries, num_points_list[level]))

    weights = attention_weights.permute(0, 2, 1, 3).reshape(batch * n_heads, 1, num_queries, -1)
    output = (torch.cat(sampled, dim=-1) * weights).sum(-1)
    return output.reshape(batch, -1, num_queries).permute(0, 2, 1)


class PointwiseLinear(nn.Linear):
    """nn.Linear applied at every position of a map: [B, in_features, H, W] -> [B, out_features, H, W].

    A 1x1 convolution with nn.Linear's parameters (and checkpoint keys): the sampler wants each
    head's maps as [head_dim, H, W], which a convolution writes directly, where projecting [S, D]
    rows needs a transpose that ONNX Runtime fuses into a slower MatMul, and which onnxruntime's
    INT8 runs as a QLinearConv.
    """

    def forward(self, x):
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)


class MSDeformableAttention(nn.Module):
    """Multi-scale deformable cross-attention around reference boxes.

    embed_dim / num_heads: model width and number of heads.
    num_points: per-level number of sampling points per head (list, one entry per level).
    method: "default" (bilinear grid_sample) or "discrete" (nearest cell, v2 option).
    offset_scale: a predicted offset of 1 moves a point by offset_scale box sizes divided by
        that level's number of points (0.5 in the official models).

    query: [B, Q, D], reference_points: [B, Q, 1, 4] (cx, cy, w, h in [0, 1]),
    value_maps: list of [B, D, H_l, W_l], one a level, spatial_shapes: their (H_l, W_l) -> [B, Q, D]
    """

    def __init__(self, embed_dim=256, num_heads=8, num_points=(4, 4, 4), method="default", offset_scale=0.5):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        if method not in SAMPLING_METHODS:
            raise ValueError(f"sampling method must be one of {SAMPLING_METHODS}, got {method!r}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_points_list = list(num_points)
        self.method = method
        self.offset_scale = offset_scale
        total_points = sum(self.num_points_list)
        scale = [1.0 / n for n in self.num_points_list for _ in range(n)]
        # Derived from num_points, so not saved (official v2 files carry it; the importer drops it).
        self.register_buffer("num_points_scale", torch.tensor(scale, dtype=torch.float32), persistent=False)

        self.sampling_offsets = nn.Linear(embed_dim, num_heads * total_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * total_points)
        self.value_proj = PointwiseLinear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self._reset_parameters()
        if method == "discrete":
            # Offsets get no gradient through a nearest-cell lookup.
            self.sampling_offsets.requires_grad_(False)

    def _reset_parameters(self):
        # Initial offsets point in num_heads evenly spread directions, farther for later points.
        nn.init.constant_(self.sampling_offsets.weight, 0)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        directions = torch.stack([thetas.cos(), thetas.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        directions = directions[:, None, :].repeat(1, sum(self.num_points_list), 1)
        distance = torch.cat([torch.arange(1, n + 1) for n in self.num_points_list]).reshape(1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_((directions * distance).flatten())
        nn.init.constant_(self.attention_weights.weight, 0)
        nn.init.constant_(self.attention_weights.bias, 0)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.constant_(self.value_proj.bias, 0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0)

    def forward(self, query, reference_points, value_maps, spatial_shapes):
        batch, num_queries = query.shape[:2]
        total_points = sum(self.num_points_list)
        offsets = self.sampling_offsets(query)
        values = [self.value_proj(value_map) for value_map in value_maps]
        # Offsets as [B, Q, 2, n_heads, points]: with x and y first, the broadcasts in _sample run over
        # contiguous spans of points, which onnxruntime computes much faster than over (x, y) pairs.
        offsets = offsets.reshape(batch, num_queries, self.num_heads, total_points, 2).permute(0, 1, 4, 2, 3)
        offsets = offsets * (self.num_points_scale * self.offset_scale).to(query.dtype)
        return self._sample(query, reference_points, values, offsets, spatial_shapes)

    def _sample(self, query, reference_points, values, offsets, spatial_shapes):
        """The attention output once the values and the sampling offsets are known.

        values: list of [B, D, H_l, W_l] (or flattened to H_l * W_l), one a level
        offsets: [B, Q, 2, n_heads, sum(num_points)], (x, y) in reference box sizes
        Returns [B, Q, D].
        """
        batch, num_queries = query.shape[:2]
        total_points = sum(self.num_points_list)
        weights = self.attention_weights(query).reshape(batch, num_queries, self.num_heads, total_points)
        weights = weights.softmax(-1)
        # reference_points [B, Q, 1, 4] -> centre and size [B, Q, 2, 1, 1], broadcast over heads and points.
        centre = reference_points[:, :, 0, :2, None, None]
        size = reference_points[:, :, 0, 2:, None, None]
        locations = (centre + offsets * size).permute(0, 1, 3, 4, 2)
        output = sample_multi_scale(values, spatial_shapes, locations, weights, self.num_points_list, self.method)
        return self.output_proj(output)
