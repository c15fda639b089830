"""Small building blocks shared by the RT-DETR backbone, encoder and decoder."""

import torch
from torch import nn

# Keys match detr_ros.modeling.config.ACTIVATIONS (the config stays importable without torch).
_ACTIVATIONS = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
    "hardsigmoid": nn.Hardsigmoid,
}


def make_activation(name):
    """An activation module from its name; None gives the identity."""
    if name is None:
        return nn.Identity()
    return _ACTIVATIONS[name]()


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (no gradients, no updates).

    Same state-dict keys as nn.BatchNorm2d minus ``num_batches_tracked``, which is ignored on load.
    """

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x):
        """x: [B, C, H, W] -> [B, C, H, W]"""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]


def freeze_batch_norm(module):
    """Replace every nn.BatchNorm2d below ``module`` by a FrozenBatchNorm2d with the same values."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight)
                frozen.bias.copy_(child.bias)
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batch_norm(child)
    return module


class ConvNormLayer(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation; the unit of PResNet and the hybrid encoder.

    x: [B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride]
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=None, activation=None):
        super().__init__()
        padding = (kernel_size - 1) // 2 if padding is None else padding
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=padding, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.act = make_activation(activation)

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class MLP(nn.Module):
    """A few Linear layers with ReLU in between (none after the last).

    x: [..., input_dim] -> [..., output_dim]
    """

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(d_in, d_out) for d_in, d_out in zip(dims, dims[1:] + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x
