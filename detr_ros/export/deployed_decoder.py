"""The RT-DETR decoder rewritten for inference: the same outputs from fewer operations.

The decoder's input projections (1x1 convolution and batch norm per level, linear) feed only linear
maps: enc_output's projection and every layer's value projection. Folded into those, the projected
maps ([B, D, H_l, W_l] at every position) are never built: each of those maps reads the encoder's
maps directly, through one 1x1 convolution a level over the flattened map. The sampling offsets
come out scaled and in the order the sampler reads them, so no transpose or scaling runs on each
call. At a fixed input size the anchors are constants.
"""

import copy

import torch
from torch import nn

from detr_ros.export.folding import compose_linear, fold_batch_norm, pointwise_conv
from detr_ros.export.substitution import FixedSizeMaps, take_over
from detr_ros.modeling.deformable_attention import MSDeformableAttention
from detr_ros.modeling.rtdetr_decoder import RTDETRTransformer


class DeployedMSDeformableAttention(MSDeformableAttention):
    """A trained MSDeformableAttention that reads the maps before the input projections feeding it.

    input_projections: per level, (weight [D, C_l], bias [D]) of the projection folded in.
    level_value_proj[l]: value_proj after that projection, an nn.Conv1d over the flattened map.
    sampling_offsets: its outputs scaled by offset_scale / points and ordered (x or y, head, point).

    query: [B, Q, D], reference_points: [B, Q, 1, 4], value_maps: list of [B, C_l, H_l, W_l] (the
    maps before the projections), spatial_shapes: their (H_l, W_l) -> [B, Q, D]
    """

    def __init__(self, trained, input_projections):
        take_over(self, trained)
        value_proj = (trained.value_proj.weight, trained.value_proj.bias)
        self.level_value_proj = nn.ModuleList(
            pointwise_conv(*compose_linear(value_proj, projection), flat=True) for projection in input_projections
        )
        del self.value_proj
        total_points = sum(self.num_points_list)
        scale = (self.num_points_scale * self.offset_scale).repeat(self.num_heads)  # [heads * points]
        weight = trained.sampling_offsets.weight.reshape(self.num_heads * total_points, 2, -1)
        bias = trained.sampling_offsets.bias.reshape(self.num_heads * total_points, 2)
        self.sampling_offsets = copy.deepcopy(trained.sampling_offsets)
        with torch.no_grad():
            self.sampling_offsets.weight.copy_((weight * scale[:, None, None]).transpose(0, 1).flatten(0, 1))
            self.sampling_offsets.bias.copy_((bias * scale[:, None]).transpose(0, 1).flatten())

    def forward(self, query, reference_points, value_maps, spatial_shapes):
        batch, num_queries = query.shape[:2]
        offsets = self.sampling_offsets(query)
        values = [project(value_map.flatten(2)) for project, value_map in zip(self.level_value_proj, value_maps)]
        offsets = offsets.reshape(batch, num_queries, 2, self.num_heads, sum(self.num_points_list))
        return self._sample(query, reference_points, values, offsets, spatial_shapes)


class DeployedRTDETRTransformer(FixedSizeMaps, RTDETRTransformer):
    """A trained RTDETRTransformer rewritten for inference (see the module docstring); it takes over
    the trained decoder's parts, its decoder layers' cross-attention becoming
    DeployedMSDeformableAttention.

    enc_level_proj[l]: enc_output's projection but for its bias, after level l's input projection,
    an nn.Conv1d over the flattened map; input_proj: identities.
    fixed_size: the model sees one input size only.

    feats: list of [B, feat_channels[l], H_l, W_l] -> {"pred_logits": [B, Q, C], "pred_boxes": [B, Q, 4]}
    """

    def __init__(self, trained, fixed_size=False):
        take_over(self, trained)
        self.fixed_size = fixed_size
        projections = [fold_batch_norm(p.conv, p.norm) for p in trained.input_proj]
        # The bias is added after the valid-anchor mask (see _encoder_output).
        enc_weight = trained.enc_output.proj.weight
        self.enc_level_proj = nn.ModuleList(
            pointwise_conv(*compose_linear((enc_weight, None), p), flat=True) for p in projections
        )
        for layer in self.decoder.layers:
            layer.cross_attn = DeployedMSDeformableAttention(layer.cross_attn, projections)
        self.input_proj = nn.ModuleList(nn.Identity() for _ in projections)

    def _encoder_memory(self, level_maps):
        """The maps [B, C_l, H_l, W_l] before the input projections, flattened, projected by
        enc_level_proj and joined into one sequence: [B, S, D]."""
        flat_maps = [m.flatten(2) for m in level_maps]
        flat_maps = [project(m) for project, m in zip(self.enc_level_proj, flat_maps)]
        return torch.cat(flat_maps, dim=2).transpose(1, 2)

    def _encoder_output(self, memory, valid_mask):
        # The memory is projected already, but for the bias: invalid positions project zeros, to the bias.
        return self.enc_output.norm(valid_mask.to(memory.dtype) * memory + self.enc_output.proj.bias)
