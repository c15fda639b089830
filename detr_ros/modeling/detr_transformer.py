"""The encoder-decoder transformer of DETR (post-norm, as in the paper).

Differences from torch.nn.Transformer, all following DETR:
  * position encodings are added to queries and keys (never to values) in every attention;
  * the encoder has no final LayerNorm;
  * the decoder applies one shared LayerNorm to the output of every layer and returns all of
    them, so the heads can supervise each layer (auxiliary losses).
Module names (self_attn, multihead_attn, linear1/2, norm1/2/3, decoder.norm) are those of
facebookresearch/detr, so its checkpoints load with a prefix change only.
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn


class TransformerEncoderLayer(nn.Module):
    """Self-attention over the flattened feature map, then a feed-forward block; post-norm."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """src, pos: [batch_size, H*W, d_model] -> [batch_size, H*W, d_model]."""
        query_key = src + pos
        attended = self.self_attn(query_key, query_key, value=src, need_weights=False)[0]
        src = self.norm1(src + self.dropout1(attended))
        transformed = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(transformed))


class TransformerDecoderLayer(nn.Module):
    """Self-attention among the object queries, cross-attention to the encoder memory, feed-forward."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor,
                query_pos: torch.Tensor) -> torch.Tensor:
        """tgt, query_pos: [batch_size, num_queries, d_model]; memory, pos: [batch_size, H*W, d_model].

        Returns [batch_size, num_queries, d_model].
        """
        query_key = tgt + query_pos
        attended = self.self_attn(query_key, query_key, value=tgt, need_weights=False)[0]
        tgt = self.norm1(tgt + self.dropout1(attended))
        attended = self.multihead_attn(tgt + query_pos, memory + pos, value=memory, need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout2(attended))
        transformed = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(transformed))


class TransformerEncoder(nn.Module):
    def __init__(self, layer: TransformerEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, src: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """src, pos: [batch_size, H*W, d_model] -> memory: [batch_size, H*W, d_model]."""
        for layer in self.layers:
            src = layer(src, pos)
        return src


class TransformerDecoder(nn.Module):
    def __init__(self, layer: TransformerDecoderLayer, num_layers: int, d_model: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor,
                query_pos: torch.Tensor) -> torch.Tensor:
        """Returns the normalised output of every layer: [num_layers, batch_size, num_queries, d_model].

        The un-normalised output is what feeds the next layer.
        """
        outputs = []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos, query_pos)
            outputs.append(self.norm(tgt))
        return torch.stack(outputs)


class Transformer(nn.Module):
    """DETR's encoder-decoder.

    Args:
        d_model: width of every token (hidden_dim).
        nhead: attention heads.
        num_encoder_layers, num_decoder_layers: depths.
        dim_feedforward: hidden width of the feed-forward blocks.
        dropout: dropout in attention and feed-forward blocks.
    """

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.d_model = d_model
        self.encoder = TransformerEncoder(
            TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout), num_encoder_layers)
        self.decoder = TransformerDecoder(
            TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout), num_decoder_layers, d_model)
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(self, src: torch.Tensor, query_embed: torch.Tensor, pos_embed: torch.Tensor) -> torch.Tensor:
        """src, pos_embed: [batch_size, d_model, H, W]; query_embed: [num_queries, d_model].

        Returns hs: [num_decoder_layers, batch_size, num_queries, d_model].
        """
        batch_size = src.shape[0]
        src = src.flatten(2).transpose(1, 2)
        pos_embed = pos_embed.flatten(2).transpose(1, 2)
        query_pos = query_embed.unsqueeze(0).expand(batch_size, -1, -1)
        memory = self.encoder(src, pos_embed)
        # The queries start empty: all their identity comes from query_pos.
        tgt = torch.zeros_like(query_pos)
        return self.decoder(tgt, memory, pos_embed, query_pos)
