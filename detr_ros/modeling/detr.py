"""DETR: end-to-end object detection with transformers (Carion et al., 2020).

A ResNet feature map (stride 32) is projected to hidden_dim, flattened, encoded with sine
position encodings, and decoded by num_queries learned object queries. Each query predicts
one softmax class distribution (the last class is "no object") and one box.
"""
import torch
from torch import nn

from detr_ros.errors import ConfigError
from detr_ros.modeling.backbone_resnet import ResNetBackbone
from detr_ros.modeling.detr_transformer import Transformer
from detr_ros.modeling.layers import MLP
from detr_ros.modeling.position_encoding import PositionEmbeddingSine

# The official and Hugging Face DETR weights were trained on images normalised with these.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DETR(nn.Module):
    """DETR object detector.

    Args:
        backbone: module mapping [B, 3, H, W] to [B, backbone.num_channels, H/s, W/s].
        position_encoding: module mapping a [B, hidden_dim, h, w] map to its [B, hidden_dim, h, w] encoding.
        transformer: encoder-decoder returning [num_decoder_layers, B, num_queries, transformer.d_model].
        num_classes: number of object classes, without the no-object class.
        num_queries: detection slots, the most objects one image can yield.
        aux_loss: in training, also return the predictions of the earlier decoder layers.
    """

    def __init__(self, backbone: nn.Module, position_encoding: nn.Module, transformer: Transformer,
                 num_classes: int, num_queries: int, aux_loss: bool = True):
        super().__init__()
        hidden_dim = transformer.d_model
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.aux_loss = aux_loss
        self.backbone = backbone
        self.position_encoding = position_encoding
        self.transformer = transformer
        self.input_proj = nn.Conv2d(backbone.num_channels, hidden_dim, kernel_size=1)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        # Not persistent: constants of the input contract, not weights of a checkpoint.
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, targets=None) -> dict:
        """images: [batch_size, 3, H, W] float RGB in [0, 1]. targets are not used by the model itself
        (the loss consumes them); the argument exists so every detr_ros model has one signature.

        Returns a dict with
          pred_logits: [batch_size, num_queries, num_classes + 1] softmax logits, last = no object;
          pred_boxes: [batch_size, num_queries, 4] normalised (cx, cy, w, h) in [0, 1];
          aux_outputs (training with aux_loss only): list of {pred_logits, pred_boxes}, one per
            earlier decoder layer.
        """
        features = self.backbone((images - self.pixel_mean) / self.pixel_std)
        src = self.input_proj(features)
        hs = self.transformer(src, self.query_embed.weight, self.position_encoding(src))
        outputs_class = self.class_embed(hs)
        outputs_coord = self.bbox_embed(hs).sigmoid()
        out = {"pred_logits": outputs_class[-1], "pred_boxes": outputs_coord[-1]}
        if self.aux_loss and self.training:
            out["aux_outputs"] = [{"pred_logits": logits, "pred_boxes": boxes}
                                  for logits, boxes in zip(outputs_class[:-1], outputs_coord[:-1])]
        return out


def build_detr(cfg) -> DETR:
    """Build DETR from a ModelConfig with architecture "detr"."""
    if cfg.pre_norm:
        raise ConfigError("model config: pre_norm is not supported; DETR here is post-norm like the published weights")
    backbone = ResNetBackbone(cfg.detr_backbone, dilation=cfg.detr_dilation)
    transformer = Transformer(d_model=cfg.hidden_dim, nhead=cfg.nheads, num_encoder_layers=cfg.enc_layers,
                              num_decoder_layers=cfg.dec_layers, dim_feedforward=cfg.dim_feedforward,
                              dropout=cfg.dropout)
    return DETR(backbone, PositionEmbeddingSine(cfg.hidden_dim // 2), transformer,
                num_classes=cfg.num_classes, num_queries=cfg.num_queries, aux_loss=cfg.aux_loss)
