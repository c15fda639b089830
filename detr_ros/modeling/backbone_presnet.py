"""PResNet: the ResNet-vd backbone of RT-DETR (lyuwenyu/RT-DETR ``PResNet``, variant "d").

ResNet-vd differs from torchvision's ResNet in two places that matter for imported weights:
the stem is three 3x3 convolutions instead of one 7x7, and a down-sampling shortcut is a
2x2 average pool followed by a 1x1 convolution (stride 1) instead of a strided 1x1 convolution.
Module names follow the official code so that its checkpoints load with few renames.
"""

from collections import OrderedDict

import torch.nn.functional as F
from torch import nn

from detr_ros.modeling.layers import ConvNormLayer, freeze_batch_norm, make_activation

BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}
STAGE_STRIDES = [4, 8, 16, 32]


def _shortcut(in_channels, out_channels, stride):
    if stride == 2:
        return nn.Sequential(
            OrderedDict(
                [
                    ("pool", nn.AvgPool2d(2, 2, 0, ceil_mode=True)),
                    ("conv", ConvNormLayer(in_channels, out_channels, 1, 1)),
                ]
            )
        )
    return ConvNormLayer(in_channels, out_channels, 1, stride)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34).

    x: [B, in_channels, H, W] -> [B, channels, H / stride, W / stride]
    """

    expansion = 1

    def __init__(self, in_channels, channels, stride, use_identity_shortcut, activation="relu"):
        super().__init__()
        self.use_identity_shortcut = use_identity_shortcut
        if not use_identity_shortcut:
            self.short = _shortcut(in_channels, channels, stride)
        self.branch2a = ConvNormLayer(in_channels, channels, 3, stride, activation=activation)
        self.branch2b = ConvNormLayer(channels, channels, 3, 1)
        self.act = make_activation(activation)

    def forward(self, x):
        out = self.branch2b(self.branch2a(x))
        shortcut = x if self.use_identity_shortcut else self.short(x)
        return self.act(out + shortcut)


class BottleNeck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, variant "d"), 1x1 expand, with a residual connection.

    x: [B, in_channels, H, W] -> [B, 4 * channels, H / stride, W / stride]
    """

    expansion = 4

    def __init__(self, in_channels, channels, stride, use_identity_shortcut, activation="relu"):
        super().__init__()
        self.branch2a = ConvNormLayer(in_channels, channels, 1, 1, activation=activation)
        self.branch2b = ConvNormLayer(channels, channels, 3, stride, activation=activation)
        self.branch2c = ConvNormLayer(channels, channels * self.expansion, 1, 1)
        self.use_identity_shortcut = use_identity_shortcut
        if not use_identity_shortcut:
            self.short = _shortcut(in_channels, channels * self.expansion, stride)
        self.act = make_activation(activation)

    def forward(self, x):
        out = self.branch2c(self.branch2b(self.branch2a(x)))
        shortcut = x if self.use_identity_shortcut else self.short(x)
        return self.act(out + shortcut)


class Blocks(nn.Module):
    """One ResNet stage: the first block changes width (and stride), the others keep it."""

    def __init__(self, block, in_channels, channels, count, stride, activation="relu"):
        super().__init__()
        self.blocks = nn.ModuleList()
        for i in range(count):
            self.blocks.append(
                block(
                    in_channels,
                    channels,
                    stride=stride if i == 0 else 1,
                    use_identity_shortcut=i > 0,
                    activation=activation,
                )
            )
            in_channels = channels * block.expansion

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


class PResNet(nn.Module):
    """ResNet-vd backbone returning the feature maps of the stages in ``return_idx``.

    depth: 18, 34 (basic blocks) or 50, 101 (bottlenecks).
    width: multiplier on every channel count (1.0 = the published networks; 0.5 halves them).
    return_idx: stage indexes to return; [1, 2, 3] gives strides 8, 16, 32.
    freeze_at: freeze the stem and the first ``freeze_at`` stages (-1: freeze nothing).
    freeze_norm: use FrozenBatchNorm2d everywhere (the published R50/R101 settings).

    images: [B, 3, H, W] -> list of [B, out_channels[i], H / out_strides[i], W / out_strides[i]]
    """

    def __init__(self, depth, width=1.0, return_idx=(1, 2, 3), activation="relu", freeze_at=-1, freeze_norm=False):
        super().__init__()
        stem_channels = int(round(64 * width))
        stem = [
            ("conv1_1", 3, stem_channels // 2, 2),
            ("conv1_2", stem_channels // 2, stem_channels // 2, 1),
            ("conv1_3", stem_channels // 2, stem_channels, 1),
        ]
        self.conv1 = nn.Sequential(
            OrderedDict(
                (name, ConvNormLayer(c_in, c_out, 3, stride, activation=activation))
                for name, c_in, c_out, stride in stem
            )
        )
        block = BottleNeck if depth >= 50 else BasicBlock
        stage_channels = [int(round(c * width)) for c in (64, 128, 256, 512)]
        self.res_layers = nn.ModuleList()
        in_channels = stem_channels
        for i, (channels, count) in enumerate(zip(stage_channels, BLOCKS_PER_STAGE[depth])):
            # The stem's max-pool already brought stage 0 to stride 4.
            self.res_layers.append(Blocks(block, in_channels, channels, count, 1 if i == 0 else 2, activation))
            in_channels = channels * block.expansion
        self.return_idx = list(return_idx)
        self.out_channels = [stage_channels[i] * block.expansion for i in self.return_idx]
        self.out_strides = [STAGE_STRIDES[i] for i in self.return_idx]

        if freeze_at >= 0:
            frozen = [self.conv1] + list(self.res_layers[: min(freeze_at, len(self.res_layers))])
            for part in frozen:
                for parameter in part.parameters():
                    parameter.requires_grad_(False)
        if freeze_norm:
            freeze_batch_norm(self)

    def forward(self, images):
        x = F.max_pool2d(self.conv1(images), kernel_size=3, stride=2, padding=1)
        features = []
        for i, stage in enumerate(self.res_layers):
            x = stage(x)
            if i in self.return_idx:
                features.append(x)
        return features
