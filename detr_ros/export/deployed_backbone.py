"""The PResNet backbone at a fixed input size: shortcut average pools as depthwise convolutions.

A down-sampling shortcut of ResNet-vd starts with a 2x2, stride 2 average pool (ceil_mode, so that
odd maps keep their last row and column). Where the input size is a multiple of the largest stride,
32, in both sides, every such pool sees an even map and equals a depthwise 2x2 convolution with
weights 1/4: the same sums, exactly. onnxruntime runs the pool slowly in both precisions, in float
because of ceil_mode and in INT8 as a QLinearAveragePool, and the convolution fast.
"""

from torch import nn

from detr_ros.modeling.backbone_presnet import STAGE_STRIDES


def average_pool_as_convolution(channels):
    """A 2x2, stride 2 average pool of an even map as a depthwise convolution: [B, C, H, W] -> [B, C, H / 2, W / 2]."""
    conv = nn.Conv2d(channels, channels, 2, stride=2, groups=channels, bias=False)
    nn.init.constant_(conv.weight, 0.25)
    conv.weight.requires_grad_(False)
    return conv


def shortcut_pools_as_convolutions(backbone, input_size):
    """Replace, in place, every shortcut's average pool of a PResNet that will only see input_size (H, W),
    where both are multiples of 32; else leave it as it is."""
    if any(side % STAGE_STRIDES[-1] for side in input_size):
        return
    shortcuts = [m for m in backbone.modules() if isinstance(getattr(m, "pool", None), nn.AvgPool2d)]
    for shortcut in shortcuts:
        shortcut.pool = average_pool_as_convolution(shortcut.conv.conv.in_channels)
