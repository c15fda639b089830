"""torchvision ResNet backbone with frozen BatchNorm, as used by DETR.

Only the last stage (stride 32, or 16 with dilation) feeds the DETR transformer. The
module names under `body` are torchvision's (conv1, bn1, layer1..layer4), which is also
the layout of the official DETR and timm checkpoints.
"""
from collections import OrderedDict

import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detr_ros.errors import ConfigError

# name -> (torchvision constructor, channels of the last stage)
RESNETS = {
    "resnet18": (torchvision.models.resnet18, 512),
    "resnet34": (torchvision.models.resnet34, 512),
    "resnet50": (torchvision.models.resnet50, 2048),
    "resnet101": (torchvision.models.resnet101, 2048),
}


class ResNetBackbone(nn.Module):
    """ResNet trunk without its classifier; BatchNorm statistics and affine terms are frozen.

    Args:
        name: one of RESNETS.
        dilation: replace the stride of the last stage with dilation (DETR-DC5): stride 16.
        train_backbone: if False every backbone parameter is frozen; if True the stem and
            layer1 stay frozen (as in DETR) and layer2..layer4 train.
    """

    def __init__(self, name: str = "resnet50", dilation: bool = False, train_backbone: bool = True):
        super().__init__()
        if name not in RESNETS:
            raise ConfigError(f"backbone {name!r} is not supported; expected one of {sorted(RESNETS)}")
        constructor, self.num_channels = RESNETS[name]
        resnet = constructor(weights=None, replace_stride_with_dilation=[False, False, dilation],
                             norm_layer=FrozenBatchNorm2d)
        self.stride = 16 if dilation else 32
        self.body = nn.Sequential(OrderedDict(
            (child, getattr(resnet, child))
            for child in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")))
        for parameter_name, parameter in self.body.named_parameters():
            trainable = train_backbone and parameter_name.split(".")[0] in ("layer2", "layer3", "layer4")
            parameter.requires_grad_(trainable)

    def forward(self, images):
        """images: [batch_size, 3, H, W] normalised -> [batch_size, num_channels, H/stride, W/stride]."""
        return self.body(images)
