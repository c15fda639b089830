"""Key mappings from published RT-DETR checkpoints to this package's layout.

Two sources:
  official  lyuwenyu/RT-DETR v1 and v2 (``rtdetr_pytorch``, ``rtdetrv2_pytorch``, including the
            releases converted from PaddlePaddle). Our modules carry the official names, so only
            v1's unnamed Sequential children and v2's derived ``num_points_scale`` need handling;
            what the weights cannot tell (eval_idx, num_queries, heads) comes from a config.
  hf        transformers ``RTDetrForObjectDetection`` / ``RTDetrV2ForObjectDetection``, current
            (>= 5) and legacy key names; the architecture comes from its config.json.
Each function returns (ModelConfig, state_dict in our layout); unknown keys raise ModelFileError.
"""

import re

import torch

from detr_ros.errors import ModelFileError
from detr_ros.modeling.backbone_presnet import BLOCKS_PER_STAGE
from detr_ros.modeling.config import ModelConfig

_DEPTH_BY_LAYOUT = {
    (tuple(blocks), depth >= 50): depth for depth, blocks in BLOCKS_PER_STAGE.items()
}


def _depth(blocks_per_stage, bottleneck, source):
    depth = _DEPTH_BY_LAYOUT.get((tuple(blocks_per_stage), bottleneck))
    if depth is None:
        kind = "bottleneck" if bottleneck else "basic"
        raise ModelFileError(
            f"{source}: backbone with {blocks_per_stage} {kind} blocks per stage is not ResNet-18/34/50/101-vd"
        )
    return depth


def _count(state_dict, pattern):
    indexes = {int(m.group(1)) for key in state_dict for m in [re.match(pattern, key)] if m}
    return max(indexes) + 1 if indexes else 0


# --- official lyuwenyu/RT-DETR ------------------------------------------------------------------

_OFFICIAL_V1_RENAMES = [
    (r"^encoder\.input_proj\.(\d+)\.0\.", r"encoder.input_proj.\1.conv."),
    (r"^encoder\.input_proj\.(\d+)\.1\.", r"encoder.input_proj.\1.norm."),
    (r"^decoder\.enc_output\.0\.", "decoder.enc_output.proj."),
    (r"^decoder\.enc_output\.1\.", "decoder.enc_output.norm."),
]


def rtdetr_state_dict_from_official(state_dict, base_config=None, source="checkpoint"):
    """Official RT-DETR weights -> (ModelConfig, state_dict).

    base_config: a ModelConfig whose non-architectural settings (eval_idx, num_queries, heads,
    input_size, losses...) are kept; the architecture read from the weights overrides it.
    """
    renamed = {}
    for key, value in state_dict.items():
        if key.endswith(("num_points_scale", "decoder.anchors", "decoder.valid_mask")):
            continue  # derived from num_points or the input size (v2 saves them as buffers)
        for pattern, replacement in _OFFICIAL_V1_RENAMES:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    version = "v2" if any(k.endswith("num_points_scale") for k in state_dict) else "v1"
    values = (base_config or ModelConfig()).to_dict()
    values.update(_official_architecture(renamed, state_dict, values["decoder_nhead"], source))
    values["version"] = version
    if version == "v1" and values["cross_attn_method"] != "default":
        values["version"] = "v2"
    return ModelConfig.from_dict(values, source=source), renamed


def _official_architecture(sd, original, nhead, source):
    try:
        stages = _count(sd, r"^backbone\.res_layers\.(\d+)\.")
        blocks = [_count(sd, rf"^backbone\.res_layers\.{i}\.blocks\.(\d+)\.") for i in range(stages)]
        bottleneck = "backbone.res_layers.0.blocks.0.branch2c.conv.weight" in sd
        encoder_hidden = sd["encoder.input_proj.0.conv.weight"].shape[0]
        fpn_hidden = sd["encoder.fpn_blocks.0.conv1.conv.weight"].shape[0]
        hidden = sd["decoder.input_proj.0.conv.weight"].shape[0]
        decoder_layers = _count(sd, r"^decoder\.decoder\.layers\.(\d+)\.")
        total_points = sd["decoder.decoder.layers.0.cross_attn.attention_weights.weight"].shape[0] // nhead
        values = {
            "architecture": "rtdetr",
            "backbone_depth": _depth(blocks, bottleneck, source),
            "backbone_width": sd["backbone.conv1.conv1_3.conv.weight"].shape[0] / 64,
            "backbone_freeze_norm": "backbone.conv1.conv1_1.norm.num_batches_tracked" not in sd,
            "encoder_hidden_dim": encoder_hidden,
            "encoder_dim_feedforward": sd["encoder.encoder.0.layers.0.linear1.weight"].shape[0],
            "encoder_layers": _count(sd, r"^encoder\.encoder\.0\.layers\.(\d+)\."),
            "encoder_expansion": fpn_hidden / encoder_hidden,
            "encoder_depth_mult": _count(sd, r"^encoder\.fpn_blocks\.0\.bottlenecks\.(\d+)\.") / 3,
            "hidden_dim": hidden,
            "decoder_layers": decoder_layers,
            "decoder_dim_feedforward": sd["decoder.decoder.layers.0.linear1.weight"].shape[0],
            "num_classes": sd["decoder.dec_score_head.0.weight"].shape[0],
            "num_denoising": 100 if "decoder.denoising_class_embed.weight" in sd else 0,
            "learn_query_content": "decoder.tgt_embed.weight" in sd,
        }
    except KeyError as error:
        raise ModelFileError(f"{source}: not an RT-DETR checkpoint: no {error.args[0]}") from error
    values["backbone_freeze_at"] = 0 if values["backbone_freeze_norm"] else -1
    if values["learn_query_content"]:
        values["num_queries"] = sd["decoder.tgt_embed.weight"].shape[0]
    scale_key = "decoder.decoder.layers.0.cross_attn.num_points_scale"
    if scale_key in original:
        values["num_points"] = _points_from_scale(original[scale_key])
    else:
        values["num_points"] = [total_points // 3] * 3
    return values


def _points_from_scale(scale):
    points, position = [], 0
    while position < len(scale):
        count = round(1.0 / float(scale[position]))
        points.append(count)
        position += count
    return points


# --- Hugging Face transformers --------------------------------------------------------------------

_HF_LEGACY_RENAMES = [
    (r"\.out_proj\.", ".o_proj."),
    (r"layers\.(\d+)\.fc([12])\.", r"layers.\1.mlp.fc\2."),
    (r"encoder\.encoder\.(\d+)\.layers", r"encoder.aifi.\1.layers"),
]

_HF_RENAMES = [
    (r"^model\.backbone\.model\.embedder\.embedder\.(\d)\.", lambda m: f"backbone.conv1.conv1_{int(m.group(1)) + 1}."),
    (
        r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.",
        lambda m: f"backbone.res_layers.{m.group(1)}.blocks.{m.group(2)}.branch2{'abc'[int(m.group(3))]}.",
    ),
    (r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.1\.", r"backbone.res_layers.\1.blocks.\2.short.conv."),
    (r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.", r"backbone.res_layers.\1.blocks.\2.short."),
    (r"^model\.encoder_input_proj\.(\d+)\.0\.", r"encoder.input_proj.\1.conv."),
    (r"^model\.encoder_input_proj\.(\d+)\.1\.", r"encoder.input_proj.\1.norm."),
    (r"^model\.encoder\.aifi\.(\d+)\.layers\.", r"encoder.encoder.\1.layers."),
    (r"^model\.encoder\.", "encoder."),
    (r"^model\.decoder_input_proj\.(\d+)\.0\.", r"decoder.input_proj.\1.conv."),
    (r"^model\.decoder_input_proj\.(\d+)\.1\.", r"decoder.input_proj.\1.norm."),
    (r"^model\.enc_output\.0\.", "decoder.enc_output.proj."),
    (r"^model\.enc_output\.1\.", "decoder.enc_output.norm."),
    (r"^model\.weight_embedding\.", "decoder.tgt_embed."),
    (r"^model\.(denoising_class_embed|enc_score_head|enc_bbox_head)\.", r"decoder.\1."),
    (r"^model\.decoder\.class_embed\.", "decoder.dec_score_head."),
    (r"^model\.decoder\.bbox_embed\.", "decoder.dec_bbox_head."),
    (r"^model\.decoder\.query_pos_head\.", "decoder.query_pos_head."),
    (r"^model\.decoder\.layers\.", "decoder.decoder.layers."),
    # inside layers (encoder and decoder)
    (r"\.convolution\.", ".conv."),
    (r"\.normalization\.", ".norm."),
    (r"\.self_attn\.o_proj\.", ".self_attn.out_proj."),
    (r"\.self_attn_layer_norm\.", ".norm1."),
    (r"\.encoder_attn_layer_norm\.", ".norm2."),
    (r"\.encoder_attn\.", ".cross_attn."),
    (r"\.mlp\.fc1\.", ".linear1."),
    (r"\.mlp\.fc2\.", ".linear2."),
]


def _rename_hf_key(key):
    for pattern, replacement in _HF_LEGACY_RENAMES:
        key = re.sub(pattern, replacement, key)
    for pattern, replacement in _HF_RENAMES:
        key = re.sub(pattern, replacement, key)
    # The encoder layer's last norm is norm2, the decoder layer's is norm3.
    if key.startswith("encoder.encoder.") and ".final_layer_norm." in key:
        key = key.replace(".final_layer_norm.", ".norm2.")
    elif ".final_layer_norm." in key:
        key = key.replace(".final_layer_norm.", ".norm3.")
    return key


def rtdetr_state_dict_from_hf(state_dict, hf_config, source="checkpoint"):
    """transformers RT-DETR (v1 or v2) weights and config.json dict -> (ModelConfig, state_dict)."""
    config = _config_from_hf(hf_config, source)
    # V2 keeps copies of the heads at the top level; the decoder's copies are the ones used.
    state_dict = {
        k: v
        for k, v in state_dict.items()
        if not k.endswith("n_points_scale")
        and not ((k.startswith("class_embed.") or k.startswith("bbox_embed.")) and f"model.decoder.{k}" in state_dict)
    }
    renamed, unknown, qkv = {}, [], {}
    for key, value in state_dict.items():
        if key.startswith(("class_embed.", "bbox_embed.")):
            key = "model.decoder." + key
        new_key = _rename_hf_key(key)
        match = re.match(r"^(.*\.self_attn)\.([qkv])_proj\.(weight|bias)$", new_key)
        if match:
            qkv.setdefault((match.group(1), match.group(3)), {})[match.group(2)] = value
        elif new_key.startswith(("backbone.", "encoder.", "decoder.")):
            renamed[new_key] = value
        else:
            unknown.append(key)
    for (prefix, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise ModelFileError(f"{source}: {prefix} lacks some of the q/k/v projections ({kind})")
        renamed[f"{prefix}.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    if unknown:
        raise ModelFileError(f"{source}: unexpected keys for a Hugging Face RT-DETR model: {', '.join(sorted(unknown)[:20])}")
    return config, renamed


def _config_from_hf(hf, source):
    backbone = hf.get("backbone_config") or {}
    depths = backbone.get("depths", [3, 4, 6, 3])
    bottleneck = backbone.get("layer_type", "bottleneck") == "bottleneck"
    v2 = hf.get("model_type") == "rt_detr_v2"
    num_levels = hf.get("decoder_n_levels", 3) if v2 else hf.get("num_feature_levels", 3)
    if num_levels != 3 or len(hf.get("encoder_in_channels", [0, 0, 0])) != 3:
        raise ModelFileError(f"{source}: only 3 feature levels (strides 8, 16, 32) are supported, config has {num_levels}")
    id2label = hf.get("id2label") or {}
    num_classes = len(id2label) if id2label else hf.get("num_labels", 80)
    n_points = hf.get("decoder_n_points", 4)
    values = {
        "name": hf.get("_name_or_path", "") or "",
        "architecture": "rtdetr",
        "version": "v2" if v2 else "v1",
        "num_classes": num_classes,
        "num_queries": hf.get("num_queries", 300),
        "hidden_dim": hf.get("d_model", 256),
        "backbone_depth": _depth(depths, bottleneck, source),
        "backbone_width": backbone.get("embedding_size", 64) / 64,
        "backbone_freeze_norm": bool(hf.get("freeze_backbone_batch_norms", True)),
        "encoder_hidden_dim": hf.get("encoder_hidden_dim", 256),
        "encoder_nhead": hf.get("encoder_attention_heads", 8),
        "encoder_dim_feedforward": hf.get("encoder_ffn_dim", 1024),
        "encoder_activation": hf.get("encoder_activation_function", "gelu"),
        "encoder_layers": hf.get("encoder_layers", 1),
        "use_encoder_idx": list(hf.get("encode_proj_layers", [2])),
        "pe_temperature": float(hf.get("positional_encoding_temperature", 10000)),
        "encoder_expansion": float(hf.get("hidden_expansion", 1.0)),
        "fusion_activation": hf.get("activation_function", "silu"),
        "decoder_layers": hf.get("decoder_layers", 6),
        "decoder_nhead": hf.get("decoder_attention_heads", 8),
        "decoder_dim_feedforward": hf.get("decoder_ffn_dim", 1024),
        "decoder_activation": hf.get("decoder_activation_function", "relu"),
        "num_points": [n_points] * 3,
        "cross_attn_method": hf.get("decoder_method", "default") if v2 else "default",
        "num_denoising": hf.get("num_denoising", 100),
        "label_noise_ratio": float(hf.get("label_noise_ratio", 0.5)),
        "box_noise_scale": float(hf.get("box_noise_scale", 1.0)),
        "learn_query_content": bool(hf.get("learn_initial_query", False)),
        "loss_class_weight": float(hf.get("weight_loss_vfl", 1.0)),
        "loss_bbox_weight": float(hf.get("weight_loss_bbox", 5.0)),
        "loss_giou_weight": float(hf.get("weight_loss_giou", 2.0)),
        "matcher_class_cost": float(hf.get("matcher_class_cost", 2.0)),
        "matcher_bbox_cost": float(hf.get("matcher_bbox_cost", 5.0)),
        "matcher_giou_cost": float(hf.get("matcher_giou_cost", 2.0)),
        "focal_alpha": float(hf.get("focal_loss_alpha", 0.75)),
        "focal_gamma": float(hf.get("focal_loss_gamma", 2.0)),
        "matcher_alpha": float(hf.get("matcher_alpha", 0.25)),
        "matcher_gamma": float(hf.get("matcher_gamma", 2.0)),
    }
    values["backbone_freeze_at"] = 0 if values["backbone_freeze_norm"] else -1
    if v2 and float(hf.get("decoder_offset_scale", 0.5)) != 0.5:
        raise ModelFileError(f"{source}: decoder_offset_scale {hf['decoder_offset_scale']} is not supported (0.5 only)")
    return ModelConfig.from_dict(values, source=source)
