"""The RT-DETR hybrid encoder rewritten for inference: the same outputs from fewer operations.

- RepVggBlock: its 3x3 and 1x1 convolution branches (each with its batch norm) become one 3x3
  convolution (FusedRepVggBlock).
- CSPRepLayer: conv1 and conv2 read the same input, so they become one 1x1 convolution with both
  outputs (MergedCSPRepLayer).
- The top-down fusion: a CSP block's input convolution reads [upsampled coarse map, fine map]
  stacked. Split into a coarse and a fine share, the coarse share runs before the nearest upsampling
  (a 1x1 convolution commutes with it), on a quarter of the positions, and a level's input projection
  (1x1 convolution and batch norm, linear) folds into the fine share when that costs no more
  multiplications (DeployedHybridEncoder).
- At a fixed input size: the position embedding is a constant, and an upsampling by exactly 2 is
  written as one, which the INT8 export turns into a copy (quantize.upsampling_as_copies).
"""

import torch
import torch.nn.functional as F
from torch import nn

from detr_ros.export.folding import compose_linear, fold_batch_norm, pointwise_conv
from detr_ros.export.substitution import FixedSizeMaps, take_over
from detr_ros.modeling.hybrid_encoder import HybridEncoder


class FusedRepVggBlock(nn.Module):
    """A trained RepVggBlock as one 3x3 convolution and its activation: x [B, C, H, W] -> [B, C, H, W]."""

    def __init__(self, trained):
        super().__init__()
        kernel3, bias3 = fold_batch_norm(trained.conv1.conv, trained.conv1.norm)
        kernel1, bias1 = fold_batch_norm(trained.conv2.conv, trained.conv2.norm)
        channels = kernel3.shape[0]
        self.act = trained.act
        self.conv = nn.Conv2d(channels, channels, 3, 1, padding=1).to(kernel3)
        with torch.no_grad():
            # A 1x1 kernel is the centre of a 3x3 one: both branches see the same padded input.
            self.conv.weight.copy_(kernel3 + F.pad(kernel1, [1, 1, 1, 1]))
            self.conv.bias.copy_(bias3 + bias1)

    def forward(self, x):
        return self.act(self.conv(x))


def merged_input_convs(trained):
    """(weight [2 * hidden, in_channels, 1, 1], bias [2 * hidden]) of a trained CSPRepLayer's conv1 and
    conv2 (batch norms folded in) as one 1x1 convolution: conv1's outputs first."""
    weights, biases = zip(fold_batch_norm(trained.conv1.conv, trained.conv1.norm),
                          fold_batch_norm(trained.conv2.conv, trained.conv2.norm))
    return torch.cat(weights), torch.cat(biases)


class MergedCSPRepLayer(nn.Module):
    """A trained CSPRepLayer with its two input convolutions as one and its RepVGG blocks fused.

    with_input_conv=False leaves the input convolution to the caller, which calls
    from_input_projection with its output (the top-down fusion computes it in two shares).

    x: [B, in_channels, H, W] -> [B, out_channels, H, W]
    """

    def __init__(self, trained, with_input_conv=True):
        super().__init__()
        self.bottlenecks = nn.Sequential(*[FusedRepVggBlock(block) for block in trained.bottlenecks])
        self.conv3 = trained.conv3
        if with_input_conv:
            self.input_conv = pointwise_conv(*merged_input_convs(trained))
        self.input_act = trained.conv1.act

    def forward(self, x):
        return self.from_input_projection(self.input_conv(x))

    def from_input_projection(self, projected):
        """The block after its input convolution.

        projected: conv1's and conv2's outputs before their activation, stacked: [B, 2 * hidden, H, W].
        """
        main, shortcut = self.input_act(projected).chunk(2, dim=1)
        return self.conv3(self.bottlenecks(main) + shortcut)


class DeployedHybridEncoder(FixedSizeMaps, HybridEncoder):
    """A trained HybridEncoder rewritten for inference (see the module docstring); it takes over the
    trained encoder's parts.

    fpn_coarse_convs[step] / fpn_fine_convs[step]: the coarse and fine shares of fpn_blocks[step]'s
    input convolution; a fine share with the level's input projection folded in reads the backbone
    map, and that level's input_proj is an identity.
    fixed_size: the model sees one input size only.

    features: list of [B, in_channels[i], H_i, W_i] -> list of [B, hidden_dim, H_i, W_i]
    """

    def __init__(self, trained, fixed_size=False):
        take_over(self, trained)
        self.fixed_size = fixed_size
        hidden = self.hidden_dim
        self.input_proj = nn.ModuleList(self.input_proj)  # some become identities below
        self.fpn_blocks = nn.ModuleList(MergedCSPRepLayer(block, with_input_conv=False) for block in trained.fpn_blocks)
        self.pan_blocks = nn.ModuleList(MergedCSPRepLayer(block) for block in trained.pan_blocks)
        coarse_convs, fine_convs = nn.ModuleList(), nn.ModuleList()
        for step, level in enumerate(range(len(self.input_proj) - 1, 0, -1)):
            weight, bias = merged_input_convs(trained.fpn_blocks[step])
            weight = weight.flatten(1)  # its input channels: the upsampled coarse map's, then the fine map's
            coarse_convs.append(pointwise_conv(weight[:, :hidden], None))
            fine = (weight[:, hidden:], bias)
            projection = self.input_proj[level - 1]
            in_channels, outputs = projection.conv.in_channels, weight.shape[0]
            separate_macs = hidden * in_channels + outputs * hidden
            # An encoded level's fine map is AIFI's output, not its projection's: nothing to fold.
            if level - 1 not in self.use_encoder_idx and outputs * in_channels <= separate_macs:
                fine = compose_linear(fine, fold_batch_norm(projection.conv, projection.norm))
                self.input_proj[level - 1] = nn.Identity()
            fine_convs.append(pointwise_conv(*fine))
        self.fpn_coarse_convs, self.fpn_fine_convs = coarse_convs, fine_convs

    def _fuse_top_down(self, step, coarse, fine):
        """fpn_blocks[step] on [upsampled coarse, fine] stacked, with its input convolution in two shares."""
        coarse_share = self._upsample(self.fpn_coarse_convs[step](coarse), fine)
        return self.fpn_blocks[step].from_input_projection(coarse_share + self.fpn_fine_convs[step](fine))

    def _upsample(self, coarse, fine):
        """By a scale of 2 where the model sees one size and the fine map is twice the coarse one: the
        graph then says so, and the INT8 export turns it into a copy; else by size."""
        if self.fixed_size:
            coarse_size, fine_size = self._map_size(coarse), self._map_size(fine)
            if fine_size == (2 * coarse_size[0], 2 * coarse_size[1]):
                return F.interpolate(coarse, scale_factor=2.0, mode="nearest")
        return super()._upsample(coarse, fine)
