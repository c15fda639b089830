"""Folding of affine maps that follow one another: batch norms into convolutions, one linear map into
the next, and the convolutions that then carry the folded values.

The inference rewrites (detr_ros.export.deploy) build their modules from these: each fold is exact
up to float rounding, so a rewritten model has the trained one's outputs.
"""

import torch
from torch import nn


def fold_batch_norm(conv, norm):
    """(weight, bias) of the one convolution that equals ``norm(conv(x))`` in eval mode.

    conv: nn.Conv2d; norm: nn.BatchNorm2d or FrozenBatchNorm2d. weight has conv's shape.
    """
    scale = norm.weight * (norm.running_var + norm.eps).rsqrt()
    bias = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return conv.weight * scale[:, None, None, None], bias


def compose_linear(outer, inner):
    """(weight [out, in], bias [out]) of ``outer(inner(x))`` for two affine maps given as (weight, bias).

    Weights are [out, in] matrices or 1x1 convolution kernels [out, in, 1, 1]; a bias may be None.
    """
    outer_weight, outer_bias = outer[0].flatten(1), outer[1]
    inner_weight, inner_bias = inner[0].flatten(1), inner[1]
    bias = outer_bias
    if inner_bias is not None:
        bias = outer_weight @ inner_bias if bias is None else outer_weight @ inner_bias + bias
    return outer_weight @ inner_weight, bias


def pointwise_conv(weight, bias, flat=False):
    """A 1x1 convolution with these values: weight [out, in] (or [out, in, 1, 1]), bias [out] or None.

    flat=False: an nn.Conv2d for maps [B, in, H, W]. flat=True: an nn.Conv1d (kernel 1) for maps
    flattened to [B, in, H * W], for projections whose output leaves the map layout (sampled or
    flattened into a sequence): onnxruntime runs 2D convolutions in its blocked layout and would
    convert each such output back, while a 1D one is a single matrix product into the plain layout.
    """
    weight = weight.reshape(weight.shape[0], -1)
    conv_type, kernel = (nn.Conv1d, (1,)) if flat else (nn.Conv2d, (1, 1))
    conv = conv_type(weight.shape[1], weight.shape[0], 1, bias=bias is not None).to(weight)
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(*weight.shape, *kernel))
        if bias is not None:
            conv.bias.copy_(bias)
    return conv
