"""The RT-DETR hybrid encoder: AIFI on the coarsest map, then CCFM (top-down FPN + bottom-up PAN).

AIFI (attention-based intra-scale feature interaction) is one transformer encoder layer applied
to the stride-32 map only, with a 2D sin-cos position embedding. CCFM (CNN-based cross-scale
feature fusion) merges the three maps with CSP blocks built from RepVGG blocks. The modules here
are the trained ones; the export rewrites them for inference (RepVGG branches fused, linear maps
that follow one another folded into one) by substituting modules of its own.
Module names follow lyuwenyu/RT-DETR ``HybridEncoder`` (v2 naming).
"""

from collections import OrderedDict
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from detr_ros.modeling.layers import ConvNormLayer, make_activation


def _sincos_embedding(height, width, embed_dim, temperature):
    quarter = embed_dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    grid_y, grid_x = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    out_y = grid_y.flatten()[:, None] * omega[None]
    out_x = grid_x.flatten()[:, None] * omega[None]
    return torch.cat([out_y.sin(), out_y.cos(), out_x.sin(), out_x.cos()], dim=1)[None].float()


_sincos_embedding_cached = lru_cache(maxsize=16)(_sincos_embedding)


def sincos_position_embedding(height, width, embed_dim, temperature=10000.0, device=None, dtype=torch.float32):
    """2D sin-cos position embedding of a [height, width] map, in row-major (flatten(2)) order.

    Returns [1, height * width, embed_dim] laid out as [sin(y w), cos(y w), sin(x w), cos(x w)].
    The official code builds the grid with the axes named the other way round but identical
    values on square maps; on rectangles its layout scrambles rows, ours gives every position
    its own row/column code (as transformers >= 5 does). Cached per size; height and width given
    as traced sizes (tensors, while tracing an export) stay in the graph, which then computes the
    embedding of whatever size it is given.
    """
    if embed_dim % 4:
        raise ValueError(f"embed_dim must be divisible by 4 for the 2D sin-cos embedding, got {embed_dim}")
    if isinstance(height, torch.Tensor) or isinstance(width, torch.Tensor):
        return _sincos_embedding(height, width, int(embed_dim), float(temperature)).to(device, dtype)
    return _sincos_embedding_cached(int(height), int(width), int(embed_dim), float(temperature)).to(device, dtype)


class RepVggBlock(nn.Module):
    """A 3x3 and a 1x1 ConvNorm branch summed, then an activation; fusable into one 3x3 conv.

    x: [B, C, H, W] -> [B, C, H, W]
    """

    def __init__(self, channels, activation="silu"):
        super().__init__()
        self.conv1 = ConvNormLayer(channels, channels, 3, 1, padding=1)
        self.conv2 = ConvNormLayer(channels, channels, 1, 1, padding=0)
        self.act = make_activation(activation)

    def forward(self, x):
        return self.act(self.conv1(x) + self.conv2(x))


class CSPRepLayer(nn.Module):
    """Cross-stage-partial fusion block: two 1x1 paths, one through RepVGG blocks, summed.

    x: [B, in_channels, H, W] -> [B, out_channels, H, W]
    """

    def __init__(self, in_channels, out_channels, num_blocks=3, expansion=1.0, activation="silu"):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvNormLayer(in_channels, hidden, 1, 1, activation=activation)
        self.conv2 = ConvNormLayer(in_channels, hidden, 1, 1, activation=activation)
        self.bottlenecks = nn.Sequential(*[RepVggBlock(hidden, activation) for _ in range(num_blocks)])
        if hidden != out_channels:
            self.conv3 = ConvNormLayer(hidden, out_channels, 1, 1, activation=activation)
        else:
            self.conv3 = nn.Identity()

    def forward(self, x):
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class TransformerEncoderLayer(nn.Module):
    """Post-norm transformer encoder layer; the position embedding is added to queries and keys.

    src: [B, L, D], pos_embed: [1, L, D] -> [B, L, D]
    """

    def __init__(self, d_model, nhead, dim_feedforward, dropout=0.0, activation="gelu"):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = make_activation(activation)

    def forward(self, src, pos_embed):
        query = src + pos_embed
        attended, _ = self.self_attn(query, query, value=src, need_weights=False)
        src = self.norm1(src + self.dropout1(attended))
        hidden = self.linear2(self.dropout(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout2(hidden))


class TransformerEncoder(nn.Module):
    """A stack of TransformerEncoderLayer (RT-DETR uses one)."""

    def __init__(self, make_layer, num_layers):
        super().__init__()
        self.layers = nn.ModuleList(make_layer() for _ in range(num_layers))

    def forward(self, src, pos_embed):
        for layer in self.layers:
            src = layer(src, pos_embed)
        return src


class HybridEncoder(nn.Module):
    """Input projections, AIFI on the maps in ``use_encoder_idx``, then CCFM fusion.

    in_channels: channels of the backbone maps (strides 8, 16, 32).
    hidden_dim: channels of every output map.
    expansion / depth_mult: width of the CSP blocks / multiplier on their 3 RepVGG blocks.

    features: list of [B, in_channels[i], H_i, W_i] -> list of [B, hidden_dim, H_i, W_i]
    """

    def __init__(
        self,
        in_channels,
        hidden_dim=256,
        nhead=8,
        dim_feedforward=1024,
        dropout=0.0,
        encoder_activation="gelu",
        use_encoder_idx=(2,),
        num_encoder_layers=1,
        pe_temperature=10000.0,
        expansion=1.0,
        depth_mult=1.0,
        activation="silu",
    ):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.use_encoder_idx = list(use_encoder_idx)
        self.pe_temperature = pe_temperature
        self.input_proj = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    [
                        ("conv", nn.Conv2d(channels, hidden_dim, kernel_size=1, bias=False)),
                        ("norm", nn.BatchNorm2d(hidden_dim)),
                    ]
                )
            )
            for channels in in_channels
        )
        self.encoder = nn.ModuleList(
            TransformerEncoder(
                lambda: TransformerEncoderLayer(hidden_dim, nhead, dim_feedforward, dropout, encoder_activation),
                num_encoder_layers,
            )
            for _ in self.use_encoder_idx
        )
        num_blocks = round(3 * depth_mult)
        num_fusions = len(in_channels) - 1
        self.lateral_convs = nn.ModuleList(
            ConvNormLayer(hidden_dim, hidden_dim, 1, 1, activation=activation) for _ in range(num_fusions)
        )
        self.fpn_blocks = nn.ModuleList(
            CSPRepLayer(hidden_dim * 2, hidden_dim, num_blocks, expansion, activation) for _ in range(num_fusions)
        )
        self.downsample_convs = nn.ModuleList(
            ConvNormLayer(hidden_dim, hidden_dim, 3, 2, activation=activation) for _ in range(num_fusions)
        )
        self.pan_blocks = nn.ModuleList(
            CSPRepLayer(hidden_dim * 2, hidden_dim, num_blocks, expansion, activation) for _ in range(num_fusions)
        )

    def forward(self, features):
        proj = [project(feature) for project, feature in zip(self.input_proj, features)]
        for encoder, index in zip(self.encoder, self.use_encoder_idx):
            batch, channels = proj[index].shape[:2]
            height, width = self._map_size(proj[index])
            flat = proj[index].flatten(2).permute(0, 2, 1)
            pos_embed = sincos_position_embedding(
                height, width, channels, self.pe_temperature, flat.device, flat.dtype
            )
            memory = encoder(flat, pos_embed)
            proj[index] = memory.permute(0, 2, 1).reshape(batch, channels, height, width).contiguous()

        # Top-down: from the coarsest map, upsample and fuse with the next finer one.
        inner = [proj[-1]]
        for step, level in enumerate(range(len(proj) - 1, 0, -1)):
            coarse = self.lateral_convs[step](inner[0])
            inner[0] = coarse
            inner.insert(0, self._fuse_top_down(step, coarse, proj[level - 1]))

        # Bottom-up: downsample and fuse with the next coarser top-down map.
        outs = [inner[0]]
        for step in range(len(proj) - 1):
            downsampled = self.downsample_convs[step](outs[-1])
            outs.append(self.pan_blocks[step](torch.cat([downsampled, inner[step + 1]], dim=1)))
        return outs

    def _fuse_top_down(self, step, coarse, fine):
        """fpn_blocks[step] on the upsampled coarse map stacked on the fine one -> [B, hidden_dim, H_fine, W_fine]."""
        return self.fpn_blocks[step](torch.cat([self._upsample(coarse, fine), fine], dim=1))

    def _upsample(self, coarse, fine):
        """coarse [B, C, h, w] -> [B, C, H, W], nearest, to fine's size: by size, so that inputs not a
        multiple of 32 work."""
        return F.interpolate(coarse, size=fine.shape[-2:], mode="nearest")

    def _map_size(self, feature_map):
        """(H, W) of a [..., H, W] map as the tensor gives them: traced values while tracing an export,
        so that the graph computes what depends on them for each input size."""
        height, width = feature_map.shape[-2:]
        return height, width
