"""Model configuration: one small typed dataclass, loaded from YAML and validated once.

A config describes the architecture (RT-DETR or DETR) and the loss weights and matcher costs
that training uses with it. ``config/models/*.yaml`` hold the published settings; a checkpoint
stores ``ModelConfig.to_dict()`` so that it can be rebuilt without the YAML file.
"""

import dataclasses
from dataclasses import dataclass, field

from detr_ros.errors import ConfigError
from detr_ros.typed_config import config_from_mapping, read_yaml

ARCHITECTURES = ("rtdetr", "detr")
RTDETR_VERSIONS = ("v1", "v2")
BACKBONE_DEPTHS = (18, 34, 50, 101)
ACTIVATIONS = ("relu", "silu", "gelu", "leaky_relu", "hardsigmoid")
SAMPLING_METHODS = ("default", "discrete")
NUM_LEVELS = 3  # RT-DETR uses the stride 8, 16 and 32 maps


@dataclass
class ModelConfig:
    """Everything needed to build a model and to weight its losses.

    Shared by both architectures: ``num_classes`` (training classes, without "no object"),
    ``num_queries``, ``hidden_dim`` (decoder width), ``input_size`` [H, W] for training,
    evaluation and export, ``aux_loss`` and the loss/matcher weights.
    """

    name: str = ""
    architecture: str = "rtdetr"
    num_classes: int = 80
    num_queries: int = 300
    hidden_dim: int = 256
    input_size: list = field(default_factory=lambda: [640, 640])
    aux_loss: bool = True

    # Loss weights and Hungarian-matcher costs. RT-DETR: varifocal class loss; DETR: cross-entropy.
    loss_class_weight: float = 1.0
    loss_bbox_weight: float = 5.0
    loss_giou_weight: float = 2.0
    matcher_class_cost: float = 2.0
    matcher_bbox_cost: float = 5.0
    matcher_giou_cost: float = 2.0
    focal_alpha: float = 0.75  # varifocal loss
    focal_gamma: float = 2.0
    matcher_alpha: float = 0.25  # focal class cost in the matcher
    matcher_gamma: float = 2.0
    eos_coef: float = 0.1  # DETR: weight of the no-object class in the cross-entropy

    # RT-DETR backbone (PResNet / ResNet-vd)
    version: str = "v2"  # which official release the layout follows; v1 has uniform points only
    backbone_depth: int = 50
    backbone_width: float = 1.0  # multiplier on all backbone channels (1.0 = published networks)
    backbone_freeze_at: int = -1  # freeze stem + this many stages; -1 = train everything
    backbone_freeze_norm: bool = False  # FrozenBatchNorm2d in the backbone

    # RT-DETR hybrid encoder
    encoder_hidden_dim: int = 256
    encoder_nhead: int = 8
    encoder_dim_feedforward: int = 1024
    encoder_dropout: float = 0.0
    encoder_activation: str = "gelu"
    encoder_layers: int = 1
    use_encoder_idx: list = field(default_factory=lambda: [2])
    pe_temperature: float = 10000.0
    encoder_expansion: float = 1.0  # width of the CSP fusion blocks
    encoder_depth_mult: float = 1.0  # multiplier on their 3 RepVGG blocks
    fusion_activation: str = "silu"

    # RT-DETR decoder
    decoder_layers: int = 6
    decoder_nhead: int = 8
    decoder_dim_feedforward: int = 1024
    decoder_dropout: float = 0.0
    decoder_activation: str = "relu"
    num_points: list = field(default_factory=lambda: [4, 4, 4])  # sampling points per level
    cross_attn_method: str = "default"  # "discrete": nearest-cell sampling (v2)
    eval_idx: int = -1  # decoder layer whose output is used at inference
    num_denoising: int = 100
    label_noise_ratio: float = 0.5
    box_noise_scale: float = 1.0
    learn_query_content: bool = False
    num_top_queries: int = 300  # detections kept by post-processing

    # DETR (facebookresearch/detr)
    detr_backbone: str = "resnet50"
    detr_dilation: bool = False  # DC5: dilate the last ResNet stage (stride 16 instead of 32)
    nheads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    pre_norm: bool = False

    def to_dict(self):
        """Plain dict of every field (JSON/YAML serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values, source="model config"):
        """Build and validate from a dict; ``source`` names the origin in error messages.

        Missing fields take their defaults; unknown fields and wrong types raise ConfigError.
        """
        return config_from_mapping(cls, values, source, "model settings")

    def validate(self, source="model config"):
        """Raise ConfigError naming the first invalid setting."""

        def check(condition, message):
            if not condition:
                raise ConfigError(f"{source}: {message}")

        check(self.architecture in ARCHITECTURES, f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        check(self.num_classes >= 1, f"num_classes must be >= 1, got {self.num_classes}")
        check(self.num_queries >= 1, f"num_queries must be >= 1, got {self.num_queries}")
        check(
            len(self.input_size) == 2 and all(isinstance(v, int) and v > 0 and v % 32 == 0 for v in self.input_size),
            f"input_size must be [height, width], positive multiples of 32, got {self.input_size}",
        )
        check(self.hidden_dim > 0, f"hidden_dim must be positive, got {self.hidden_dim}")
        if self.architecture == "detr":
            check(self.hidden_dim % self.nheads == 0, f"hidden_dim {self.hidden_dim} is not divisible by nheads {self.nheads}")
            check(self.enc_layers >= 0 and self.dec_layers >= 1, "enc_layers must be >= 0 and dec_layers >= 1")
            return
        check(self.version in RTDETR_VERSIONS, f"version must be one of {RTDETR_VERSIONS}, got {self.version!r}")
        check(self.backbone_depth in BACKBONE_DEPTHS, f"backbone_depth must be one of {BACKBONE_DEPTHS}, got {self.backbone_depth}")
        check(self.backbone_width > 0, f"backbone_width must be positive, got {self.backbone_width}")
        check(-1 <= self.backbone_freeze_at <= 4, f"backbone_freeze_at must be in [-1, 4], got {self.backbone_freeze_at}")
        check(
            self.encoder_hidden_dim % 4 == 0 and self.encoder_hidden_dim % self.encoder_nhead == 0,
            f"encoder_hidden_dim {self.encoder_hidden_dim} must be divisible by 4 and by encoder_nhead {self.encoder_nhead}",
        )
        check(
            self.hidden_dim % self.decoder_nhead == 0,
            f"hidden_dim {self.hidden_dim} is not divisible by decoder_nhead {self.decoder_nhead}",
        )
        check(self.encoder_layers >= 0, f"encoder_layers must be >= 0, got {self.encoder_layers}")
        check(
            all(0 <= i < NUM_LEVELS for i in self.use_encoder_idx),
            f"use_encoder_idx entries must be in [0, {NUM_LEVELS - 1}], got {self.use_encoder_idx}",
        )
        check(self.decoder_layers >= 1, f"decoder_layers must be >= 1, got {self.decoder_layers}")
        check(
            -self.decoder_layers <= self.eval_idx < self.decoder_layers,
            f"eval_idx must address one of the {self.decoder_layers} decoder layers, got {self.eval_idx}",
        )
        check(
            len(self.num_points) == NUM_LEVELS and all(isinstance(n, int) and n >= 1 for n in self.num_points),
            f"num_points must list {NUM_LEVELS} positive integers (one per level), got {self.num_points}",
        )
        check(self.cross_attn_method in SAMPLING_METHODS, f"cross_attn_method must be one of {SAMPLING_METHODS}, got {self.cross_attn_method!r}")
        check(
            self.version == "v2" or (len(set(self.num_points)) == 1 and self.cross_attn_method == "default"),
            "version v1 has the same number of points on every level and bilinear sampling; use version v2",
        )
        for name in ("encoder_activation", "fusion_activation", "decoder_activation"):
            check(getattr(self, name) in ACTIVATIONS, f"{name} must be one of {ACTIVATIONS}, got {getattr(self, name)!r}")
        check(self.num_denoising >= 0, f"num_denoising must be >= 0, got {self.num_denoising}")
        check(self.num_top_queries >= 1, f"num_top_queries must be >= 1, got {self.num_top_queries}")


def load_model_config(path):
    """Read and validate a model YAML file -> ModelConfig. Errors name the file."""
    return ModelConfig.from_dict(read_yaml(path, "model config"), source=str(path))
