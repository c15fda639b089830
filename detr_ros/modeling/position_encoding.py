"""Sine position encoding of DETR ("Attention is all you need" generalised to 2D).

Half of the channels encode the row, half the column; each half interleaves sin and cos
at geometrically spaced frequencies. Coordinates are normalised to (0, scale] by the
feature-map size, so the encoding of a relative position does not depend on the input
resolution (DETR trains at many sizes). The RT-DETR hybrid encoder uses a different,
unnormalised sin-cos layout (sin block then cos block, width first) and keeps its own.
"""
import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """Fixed 2D sine/cosine position encoding of a feature map without padding.

    Args:
        num_pos_feats: channels per axis; the output has 2 * num_pos_feats channels
            (DETR uses hidden_dim // 2).
        temperature: base of the geometric frequency progression.
        scale: the normalised coordinate of the last row / column.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0,
                 scale: float = 2 * math.pi):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features: [batch_size, C, H, W] (only its shape, device and dtype are used).

        Returns pos: [batch_size, 2 * num_pos_feats, H, W], row channels first, then column.
        """
        batch_size, _, height, width = features.shape
        device = features.device
        # Same arithmetic as a cumulative sum over an all-valid mask divided by its last
        # value (+1e-6), so outputs match DETR implementations bit for bit.
        eps = 1e-6
        y_embed = torch.arange(1, height + 1, dtype=torch.float32, device=device)
        x_embed = torch.arange(1, width + 1, dtype=torch.float32, device=device)
        y_embed = y_embed / (y_embed[-1:] + eps) * self.scale
        x_embed = x_embed / (x_embed[-1:] + eps) * self.scale

        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)

        pos_x = self._interleave_sin_cos(x_embed[:, None] / dim_t)  # [W, num_pos_feats]
        pos_y = self._interleave_sin_cos(y_embed[:, None] / dim_t)  # [H, num_pos_feats]
        pos = torch.cat((pos_y[:, None, :].expand(height, width, -1),
                         pos_x[None, :, :].expand(height, width, -1)), dim=2)
        return pos.permute(2, 0, 1).unsqueeze(0).expand(batch_size, -1, -1, -1).to(features.dtype)

    @staticmethod
    def _interleave_sin_cos(angles: torch.Tensor) -> torch.Tensor:
        """angles: [N, F] -> [N, F] with sin of even channels and cos of odd ones, interleaved."""
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)
