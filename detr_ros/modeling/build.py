"""build_model(config): the one place that turns a ModelConfig into an nn.Module."""

from detr_ros.modeling.backbone_presnet import PResNet
from detr_ros.modeling.hybrid_encoder import HybridEncoder
from detr_ros.modeling.rtdetr import RTDETR
from detr_ros.modeling.rtdetr_decoder import RTDETRTransformer


def build_rtdetr(cfg):
    """RT-DETR from a ModelConfig with architecture "rtdetr"."""
    backbone = PResNet(
        cfg.backbone_depth,
        width=cfg.backbone_width,
        return_idx=(1, 2, 3),
        freeze_at=cfg.backbone_freeze_at,
        freeze_norm=cfg.backbone_freeze_norm,
    )
    encoder = HybridEncoder(
        backbone.out_channels,
        hidden_dim=cfg.encoder_hidden_dim,
        nhead=cfg.encoder_nhead,
        dim_feedforward=cfg.encoder_dim_feedforward,
        dropout=cfg.encoder_dropout,
        encoder_activation=cfg.encoder_activation,
        use_encoder_idx=cfg.use_encoder_idx,
        num_encoder_layers=cfg.encoder_layers,
        pe_temperature=cfg.pe_temperature,
        expansion=cfg.encoder_expansion,
        depth_mult=cfg.encoder_depth_mult,
        activation=cfg.fusion_activation,
    )
    decoder = RTDETRTransformer(
        num_classes=cfg.num_classes,
        hidden_dim=cfg.hidden_dim,
        num_queries=cfg.num_queries,
        feat_channels=[cfg.encoder_hidden_dim] * len(backbone.out_channels),
        num_points=cfg.num_points,
        nhead=cfg.decoder_nhead,
        num_layers=cfg.decoder_layers,
        dim_feedforward=cfg.decoder_dim_feedforward,
        dropout=cfg.decoder_dropout,
        activation=cfg.decoder_activation,
        num_denoising=cfg.num_denoising,
        label_noise_ratio=cfg.label_noise_ratio,
        box_noise_scale=cfg.box_noise_scale,
        learn_query_content=cfg.learn_query_content,
        eval_idx=cfg.eval_idx,
        cross_attn_method=cfg.cross_attn_method,
        aux_loss=cfg.aux_loss,
    )
    return RTDETR(backbone, encoder, decoder)


def build_model(cfg):
    """nn.Module for ``cfg`` (a validated ModelConfig), freshly initialised, in training mode."""
    if cfg.architecture == "detr":
        # DETR lives in its own modules; imported here only when asked for.
        from detr_ros.modeling.detr import build_detr

        return build_detr(cfg)
    return build_rtdetr(cfg)
