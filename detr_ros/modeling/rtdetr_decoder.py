"""The RT-DETR decoder: query selection from encoder proposals, then deformable-attention layers.

Every position of the three encoder maps proposes a box (an anchor refined by ``enc_bbox_head``)
and class scores; the ``num_queries`` best-scoring proposals become the decoder's initial queries
and reference boxes (the scores are trained IoU-aware with the varifocal loss). Each decoder layer
refines the boxes (iterative refinement); at inference only the layers up to ``eval_idx`` run.
Module names follow lyuwenyu/RT-DETR ``RTDETRTransformerv2``.
"""

import math
from collections import OrderedDict

import torch
from torch import nn

from detr_ros.modeling.box_ops import inverse_sigmoid
from detr_ros.modeling.deformable_attention import MSDeformableAttention
from detr_ros.modeling.denoising import make_denoising_queries
from detr_ros.modeling.layers import MLP, make_activation


class TransformerDecoderLayer(nn.Module):
    """Self-attention among queries, deformable cross-attention to the maps, feed-forward; post-norm.

    target: [B, Q, D], reference_points: [B, Q, 1, 4], value_maps: list of [B, C_l, H_l, W_l],
    attn_mask: [Q, Q] bool or None, query_pos_embed: [B, Q, D] -> [B, Q, D]
    """

    def __init__(
        self, d_model, nhead, dim_feedforward, dropout=0.0, activation="relu", num_points=(4, 4, 4), method="default"
    ):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.cross_attn = MSDeformableAttention(d_model, nhead, num_points, method=method)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = make_activation(activation)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)
        nn.init.xavier_uniform_(self.linear1.weight)
        nn.init.xavier_uniform_(self.linear2.weight)

    def forward(self, target, reference_points, value_maps, spatial_shapes, attn_mask, query_pos_embed):
        query = target + query_pos_embed
        attended, _ = self.self_attn(query, query, value=target, attn_mask=attn_mask, need_weights=False)
        target = self.norm1(target + self.dropout1(attended))
        attended = self.cross_attn(target + query_pos_embed, reference_points, value_maps, spatial_shapes)
        target = self.norm2(target + self.dropout2(attended))
        hidden = self.linear2(self.dropout3(self.activation(self.linear1(target))))
        return self.norm3(target + self.dropout4(hidden))


class TransformerDecoder(nn.Module):
    """The decoder layers with iterative box refinement (heads are handed in by the caller)."""

    def __init__(self, make_layer, num_layers, eval_idx=-1):
        super().__init__()
        self.layers = nn.ModuleList(make_layer() for _ in range(num_layers))
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx

    def forward(self, target, ref_points_unact, value_maps, spatial_shapes, bbox_head, score_head, query_pos_head,
                attn_mask):
        """Returns (boxes [n_out, B, Q, 4] cxcywh in [0, 1], logits [n_out, B, Q, C]) where n_out is the
        number of layers in training and 1 (the ``eval_idx`` layer) at inference."""
        boxes, logits = [], []
        ref_points_detached = ref_points_unact.sigmoid()
        ref_points = ref_points_detached
        output = target
        for i, layer in enumerate(self.layers):
            query_pos_embed = query_pos_head(ref_points_detached)
            output = layer(output, ref_points_detached.unsqueeze(2), value_maps, spatial_shapes, attn_mask,
                           query_pos_embed)
            refined = (bbox_head[i](output) + inverse_sigmoid(ref_points_detached)).sigmoid()
            if self.training:
                logits.append(score_head[i](output))
                # Later layers' boxes keep the gradient through the previous refinement.
                boxes.append(refined if i == 0 else (bbox_head[i](output) + inverse_sigmoid(ref_points)).sigmoid())
            elif i == self.eval_idx:
                logits.append(score_head[i](output))
                boxes.append(refined)
                break
            ref_points = refined
            ref_points_detached = refined.detach()
        return torch.stack(boxes), torch.stack(logits)


def generate_anchors(spatial_shapes, grid_size=0.05, eps=1e-2, device=None, dtype=torch.float32):
    """Anchor boxes at every cell of every level, as logits, and which of them are usable.

    spatial_shapes: list of (H_l, W_l); a level-l anchor is a square of side grid_size * 2**l.
    Returns (anchors [1, S, 4] logit(cx, cy, w, h), inf where invalid; valid_mask [1, S, 1] bool).
    """
    anchors = []
    for level, (height, width) in enumerate(spatial_shapes):
        grid_y, grid_x = torch.meshgrid(
            torch.arange(height, dtype=dtype, device=device), torch.arange(width, dtype=dtype, device=device), indexing="ij"
        )
        centres = torch.stack([(grid_x + 0.5) / width, (grid_y + 0.5) / height], dim=-1)
        sizes = torch.full_like(centres, grid_size * 2.0**level)
        anchors.append(torch.cat([centres, sizes], dim=-1).reshape(1, height * width, 4))
    anchors = torch.cat(anchors, dim=1)
    valid_mask = ((anchors > eps) & (anchors < 1 - eps)).all(-1, keepdim=True)
    anchors = torch.log(anchors / (1 - anchors))
    return torch.where(valid_mask, anchors, torch.inf), valid_mask


class RTDETRTransformer(nn.Module):
    """Decoder side of RT-DETR: input projections, query selection, decoder layers and heads.

    feats: list of [B, feat_channels[l], H_l, W_l] (the hybrid encoder's maps)
    targets: training only, list of {"labels", "boxes"} (see make_denoising_queries)
    Returns {"pred_logits": [B, Q, C], "pred_boxes": [B, Q, 4]} and, in training,
    "aux_outputs", "enc_aux_outputs", and with denoising "dn_aux_outputs" and "dn_meta".
    """

    def __init__(
        self,
        num_classes=80,
        hidden_dim=256,
        num_queries=300,
        feat_channels=(256, 256, 256),
        num_points=(4, 4, 4),
        nhead=8,
        num_layers=6,
        dim_feedforward=1024,
        dropout=0.0,
        activation="relu",
        num_denoising=100,
        label_noise_ratio=0.5,
        box_noise_scale=1.0,
        learn_query_content=False,
        eval_idx=-1,
        cross_attn_method="default",
        aux_loss=True,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.num_denoising = num_denoising
        self.label_noise_ratio = label_noise_ratio
        self.box_noise_scale = box_noise_scale
        self.aux_loss = aux_loss
        self._anchor_cache = {}

        self.input_proj = nn.ModuleList(
            nn.Sequential(
                OrderedDict(
                    [
                        ("conv", nn.Conv2d(channels, hidden_dim, 1, bias=False)),
                        ("norm", nn.BatchNorm2d(hidden_dim)),
                    ]
                )
            )
            for channels in feat_channels
        )
        self.decoder = TransformerDecoder(
            lambda: TransformerDecoderLayer(
                hidden_dim, nhead, dim_feedforward, dropout, activation, num_points, cross_attn_method
            ),
            num_layers,
            eval_idx,
        )
        if num_denoising > 0:
            self.denoising_class_embed = nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes)
            nn.init.normal_(self.denoising_class_embed.weight[:-1])
        self.learn_query_content = learn_query_content
        if learn_query_content:
            self.tgt_embed = nn.Embedding(num_queries, hidden_dim)
        self.query_pos_head = MLP(4, 2 * hidden_dim, hidden_dim, 2)
        self.enc_output = nn.Sequential(
            OrderedDict([("proj", nn.Linear(hidden_dim, hidden_dim)), ("norm", nn.LayerNorm(hidden_dim))])
        )
        self.enc_score_head = nn.Linear(hidden_dim, num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3)
        self.dec_score_head = nn.ModuleList(nn.Linear(hidden_dim, num_classes) for _ in range(num_layers))
        self.dec_bbox_head = nn.ModuleList(MLP(hidden_dim, hidden_dim, 4, 3) for _ in range(num_layers))
        self._reset_parameters()

    def _reset_parameters(self):
        # Class biases start at a 1% foreground prior; box heads start as "keep the reference".
        prior_bias = -math.log((1 - 0.01) / 0.01)
        nn.init.constant_(self.enc_score_head.bias, prior_bias)
        nn.init.constant_(self.enc_bbox_head.layers[-1].weight, 0)
        nn.init.constant_(self.enc_bbox_head.layers[-1].bias, 0)
        for score_head, bbox_head in zip(self.dec_score_head, self.dec_bbox_head):
            nn.init.constant_(score_head.bias, prior_bias)
            nn.init.constant_(bbox_head.layers[-1].weight, 0)
            nn.init.constant_(bbox_head.layers[-1].bias, 0)
        nn.init.xavier_uniform_(self.enc_output.proj.weight)
        if self.learn_query_content:
            nn.init.xavier_uniform_(self.tgt_embed.weight)
        nn.init.xavier_uniform_(self.query_pos_head.layers[0].weight)
        nn.init.xavier_uniform_(self.query_pos_head.layers[1].weight)
        for projection in self.input_proj:
            nn.init.xavier_uniform_(projection.conv.weight)

    def anchors(self, spatial_shapes, device, dtype):
        """generate_anchors for these level sizes, computed once per size, device and dtype; sizes
        given as traced values (tensors, while tracing an export) stay in the graph instead."""
        if any(isinstance(side, torch.Tensor) for shape in spatial_shapes for side in shape):
            return generate_anchors(spatial_shapes, device=device, dtype=dtype)
        key = (tuple(spatial_shapes), str(device), dtype)
        if key not in self._anchor_cache:
            if len(self._anchor_cache) >= 32:  # many input sizes: keep memory bounded
                self._anchor_cache.clear()
            self._anchor_cache[key] = generate_anchors(spatial_shapes, device=device, dtype=dtype)
        return self._anchor_cache[key]

    def _encoder_memory(self, level_maps):
        """enc_output's input, the maps [B, D, H_l, W_l] flattened into one sequence: [B, S, D]."""
        flat_maps = [m.flatten(2) for m in level_maps]
        return torch.cat(flat_maps, dim=2).transpose(1, 2)

    def _encoder_output(self, memory, valid_mask):
        """enc_output of the memory [B, S, D] at the positions of valid anchors (valid_mask [1, S, 1]),
        of zeros elsewhere: [B, S, D]."""
        return self.enc_output(valid_mask.to(memory.dtype) * memory)

    def _select_queries(self, level_maps, spatial_shapes):
        """level_maps: list of [B, D, H_l, W_l], spatial_shapes: their (H_l, W_l) -> (content [B, Q, D],
        reference boxes before sigmoid [B, Q, 4], logits [B, Q, C])."""
        memory = self._encoder_memory(level_maps)
        if memory.shape[1] < self.num_queries:
            raise ValueError(
                f"input too small: its feature maps {spatial_shapes} have {memory.shape[1]} positions, "
                f"fewer than the {self.num_queries} queries to select"
            )
        anchors, valid_mask = self.anchors(spatial_shapes, memory.device, memory.dtype)
        output_memory = self._encoder_output(memory, valid_mask)
        enc_logits = self.enc_score_head(output_memory)
        _, topk = torch.topk(enc_logits.max(-1).values, self.num_queries, dim=1)

        def take(x):
            return x.gather(1, topk.unsqueeze(-1).expand(-1, -1, x.shape[-1]))

        topk_memory, topk_logits = take(output_memory), take(enc_logits)
        # Boxes only for the selected proposals: the same values, without running the 3-layer MLP
        # on every map position.
        topk_anchors = take(anchors.expand(memory.shape[0], -1, -1))
        topk_boxes_unact = self.enc_bbox_head(topk_memory) + topk_anchors
        if self.learn_query_content:
            content = self.tgt_embed.weight.unsqueeze(0).expand(memory.shape[0], -1, -1)
        else:
            content = topk_memory.detach()
        return content, topk_boxes_unact, topk_logits

    def forward(self, feats, targets=None):
        level_maps = [project(feat) for project, feat in zip(self.input_proj, feats)]
        denoising = None
        if self.training and self.num_denoising > 0 and targets is not None:
            denoising = make_denoising_queries(
                targets,
                self.num_classes,
                self.num_queries,
                self.denoising_class_embed,
                self.num_denoising,
                self.label_noise_ratio,
                self.box_noise_scale,
            )
        spatial_shapes = [self._map_size(m) for m in level_maps]
        content, ref_unact, enc_topk_logits = self._select_queries(level_maps, spatial_shapes)
        enc_topk_boxes = ref_unact.sigmoid()
        ref_unact = ref_unact.detach()
        attn_mask, dn_meta = None, None
        if denoising is not None:
            dn_content, dn_ref_unact, attn_mask, dn_meta = denoising
            content = torch.cat([dn_content, content], dim=1)
            ref_unact = torch.cat([dn_ref_unact, ref_unact], dim=1)

        boxes, logits = self.decoder(
            content,
            ref_unact,
            level_maps,
            spatial_shapes,
            self.dec_bbox_head,
            self.dec_score_head,
            self.query_pos_head,
            attn_mask,
        )
        if dn_meta is not None:
            dn_boxes, boxes = boxes.split(dn_meta["dn_num_split"], dim=2)
            dn_logits, logits = logits.split(dn_meta["dn_num_split"], dim=2)

        out = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.training and self.aux_loss:
            out["aux_outputs"] = _pairs(logits[:-1], boxes[:-1])
            out["enc_aux_outputs"] = _pairs([enc_topk_logits], [enc_topk_boxes])
            if dn_meta is not None:
                out["dn_aux_outputs"] = _pairs(dn_logits, dn_boxes)
                out["dn_meta"] = dn_meta
        return out

    def _map_size(self, feature_map):
        """(H, W) of a [..., H, W] map as the tensor gives them: traced values while tracing an export,
        so that the graph computes the anchors and sampling grids for each input size."""
        height, width = feature_map.shape[-2:]
        return height, width


def _pairs(logits, boxes):
    return [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits, boxes)]
