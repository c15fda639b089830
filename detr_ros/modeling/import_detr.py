"""Import published DETR weights: facebookresearch/detr and Hugging Face DetrForObjectDetection.

Both functions return an ImportedDetr: the ModelConfig of our DETR, a state dict that loads
into it with strict=True, and the category id (and name, where known) of every class.
Nothing here unpickles: callers hand in tensors already loaded safely.

Class rows. The COCO releases have a 92-row class head: one row per COCO category *id*
0..90 (11 ids are unused: 0, 12, 26, ...) plus no-object. We keep only the rows of real
categories plus no-object and record which category id each kept row stands for
(ImportedDetr.category_ids), so training class i of our model is category_ids[i]. This keeps
the explicit id mapping every other detr_ros model has (no "class index == category id"
convention), never lets an unused id win the argmax, and makes an imported COCO DETR
interchangeable with an imported COCO RT-DETR downstream. The rows are copied unchanged;
dropping the unused ids (never a training target) only renormalises the softmax.
  * Hugging Face checkpoints name their rows (id2label); rows named "N/A" are the unused ids.
  * Official checkpoints carry no names; a 92-row head is the COCO id layout above (names
    and ids from config/labels/coco.yaml), any other head is taken as one row per class,
    ids 0..num_classes-1, no names.
"""
import re
import typing

import torch

from detr_ros.errors import ConfigError, ModelFileError
from detr_ros.modeling.config import ModelConfig
from detr_ros.modeling.detr import build_detr
from detr_ros.runtime.labels import coco_labels

COCO_NUM_ID_SLOTS = 91  # category ids 0..90, of which the 80 in config/labels/coco.yaml are used
UNUSED_LABEL = "N/A"


class ImportedDetr(typing.NamedTuple):
    """What an importer hands to `detr-ros convert`.

    model_config: ModelConfig with architecture "detr".
    state_dict: loads into build_model(model_config) with strict=True.
    category_ids: category_ids[i] is the dataset category id of training class i.
    class_names: class_names[i] names training class i; None where the source names none.
    """
    model_config: ModelConfig
    state_dict: dict
    category_ids: list
    class_names: list | None


# (bottleneck blocks?, blocks per stage) -> torchvision ResNet name
_RESNET_LAYOUTS = {
    (False, (2, 2, 2, 2)): "resnet18",
    (False, (3, 4, 6, 3)): "resnet34",
    (True, (3, 4, 6, 3)): "resnet50",
    (True, (3, 4, 23, 3)): "resnet101",
}
_TORCHVISION_STEM_WIDTH = 64
_TORCHVISION_STAGE_WIDTHS = {False: [64, 128, 256, 512], True: [256, 512, 1024, 2048]}  # by bottleneck?
# DETR's published training settings that a checkpoint does not record.
_DETR_INPUT_SIZE = [800, 1088]  # shorter side 800 as in DETR's evaluation, 4:3, multiples of 32
_DETR_MATCHER_CLASS_COST = 1.0
_MAX_KEYS_LISTED = 12


def detr_config_and_state_dict_from_official(state_dict: dict, *, dilation: bool = False,
                                             nheads: int = 8) -> ImportedDetr:
    """Import a facebookresearch/detr checkpoint (e.g. detr-r50-e632da11.pth).

    state_dict: the loaded file ({"model": weights, ...}) or the weights themselves, laid out as
        backbone.0.body.* (torchvision ResNet), transformer.{encoder,decoder}.layers.N.*,
        transformer.decoder.norm.*, input_proj.*, query_embed.weight, class_embed.*,
        bbox_embed.layers.N.*.
    dilation: the checkpoint is a DC5 variant (e.g. detr-r50-dc5-*.pth); weights cannot tell.
    nheads: attention heads; weights cannot tell either, and every official release uses 8.

    Raises ModelFileError naming missing, unexpected and mis-shaped keys if the weights do not
    fit the DETR they describe.
    """
    weights = state_dict["model"] if isinstance(state_dict, dict) and "model" in state_dict else state_dict
    renamed, sources = {}, {}
    for key, value in _tensor_items(weights):
        if key.endswith(".num_batches_tracked"):
            continue
        # Official DETR wraps the backbone and the position encoding in a Sequential (Joiner).
        new_key = "backbone.body." + key[len("backbone.0.body."):] if key.startswith("backbone.0.body.") else key
        renamed[new_key] = value
        sources[new_key] = key

    num_rows = _rows(renamed, "class_embed.weight")
    if num_rows == COCO_NUM_ID_SLOTS + 1:
        class_names, category_ids = coco_labels()
    else:
        class_names, category_ids = None, list(range(max(num_rows - 1, 1)))
    _keep_class_rows(renamed, category_ids)  # row index == category id in both layouts

    backbone = _resnet_name(renamed, "backbone.body.", sources)
    model_config = _detr_config(
        name=_model_name(backbone, dilation), detr_backbone=backbone, detr_dilation=dilation,
        num_classes=len(category_ids), num_queries=_rows(renamed, "query_embed.weight", default=100),
        hidden_dim=_cols(renamed, "query_embed.weight", default=256), nheads=nheads,
        enc_layers=_count_layers(renamed, "transformer.encoder.layers."),
        dec_layers=_count_layers(renamed, "transformer.decoder.layers.") or 6,
        dim_feedforward=_rows(renamed, "transformer.decoder.layers.0.linear1.weight", default=2048))
    _check_fits(model_config, renamed, sources, "facebookresearch/detr")
    return ImportedDetr(model_config, renamed, category_ids, class_names)


def detr_config_and_state_dict_from_hf(state_dict: dict, hf_config: dict) -> ImportedDetr:
    """Import a Hugging Face DetrForObjectDetection (model.safetensors / pytorch_model.bin + config.json).

    Accepts both key layouts transformers has used: the one on disk (model.backbone.conv_encoder.model.*,
    self_attn.out_proj, fc1; what the Hub and save_pretrained hold) and the in-memory one of
    transformers >= 5 (model.backbone.model.*, o_proj, mlp.fc1), with either backbone: the timm
    ResNet (use_timm_backbone, the Hub's facebook/detr-resnet-50) whose module names are
    torchvision's, or the transformers ResNet (use_timm_backbone=False, embedder / encoder.stages).
    The q/k/v projections are fused into nn.MultiheadAttention's in_proj.

    Raises ModelFileError for settings our DETR does not have and for weights that do not fit,
    naming missing, unexpected and mis-shaped keys.
    """
    if hf_config.get("model_type", "detr") != "detr":
        raise ModelFileError(f"Hugging Face config: model_type is {hf_config['model_type']!r}, expected 'detr'")
    for setting, supported in (("activation_function", "relu"), ("position_embedding_type", "sine")):
        if hf_config.get(setting, supported) != supported:
            raise ModelFileError(f"Hugging Face config: {setting} {hf_config[setting]!r} is not supported "
                                 f"(DETR here uses {supported!r})")
    for encoder_setting, decoder_setting in (("encoder_attention_heads", "decoder_attention_heads"),
                                             ("encoder_ffn_dim", "decoder_ffn_dim")):
        if hf_config.get(encoder_setting, 0) != hf_config.get(decoder_setting, 0):
            raise ModelFileError(f"Hugging Face config: {encoder_setting} ({hf_config.get(encoder_setting)}) "
                                 f"differs from {decoder_setting} ({hf_config.get(decoder_setting)}); "
                                 "DETR here uses one value for both")
    backbone, dilation, hf_resnet_layout = _hf_backbone(hf_config)

    renamed, sources, attention_parts = {}, {}, {}
    for key, value in _tensor_items(state_dict):
        if key.endswith(".num_batches_tracked"):
            continue
        new_key = _rename_hf(key, hf_resnet_layout)
        projection = re.fullmatch(r"(.+\.(?:self_attn|multihead_attn))\.([qkv])_proj\.(weight|bias)", new_key)
        if projection:
            attention_parts.setdefault((projection[1], projection[3]), {})[projection[2]] = (key, value)
            continue
        renamed[new_key] = value
        sources[new_key] = key
    _fuse_qkv(attention_parts, renamed, sources)

    rows, category_ids, class_names = _hf_class_rows(hf_config, _rows(renamed, "class_embed.weight"))
    _keep_class_rows(renamed, rows)
    model_config = _detr_config(
        name=_model_name(backbone, dilation), detr_backbone=backbone, detr_dilation=dilation,
        num_classes=len(category_ids), num_queries=hf_config.get("num_queries", 100),
        hidden_dim=hf_config.get("d_model", 256), nheads=hf_config.get("encoder_attention_heads", 8),
        enc_layers=hf_config.get("encoder_layers", 6), dec_layers=hf_config.get("decoder_layers", 6),
        dim_feedforward=hf_config.get("encoder_ffn_dim", 2048), dropout=float(hf_config.get("dropout", 0.1)),
        eos_coef=float(hf_config.get("eos_coefficient", 0.1)),
        loss_bbox_weight=float(hf_config.get("bbox_loss_coefficient", 5)),
        loss_giou_weight=float(hf_config.get("giou_loss_coefficient", 2)),
        matcher_class_cost=float(hf_config.get("class_cost", 1)),
        matcher_bbox_cost=float(hf_config.get("bbox_cost", 5)),
        matcher_giou_cost=float(hf_config.get("giou_cost", 2)))
    _check_fits(model_config, renamed, sources, "Hugging Face DetrForObjectDetection")
    return ImportedDetr(model_config, renamed, category_ids, class_names)


def _tensor_items(weights):
    if not isinstance(weights, dict):
        raise ModelFileError(f"expected a mapping of parameter names to tensors, found {type(weights).__name__}")
    not_tensors = [key for key, value in weights.items() if not torch.is_tensor(value)]
    if not_tensors:
        raise ModelFileError(f"entries that are not tensors: {_listing(not_tensors)}")
    return weights.items()


def _rows(state_dict, key, default=0):
    return state_dict[key].shape[0] if key in state_dict and state_dict[key].dim() >= 1 else default


def _cols(state_dict, key, default):
    return state_dict[key].shape[1] if key in state_dict and state_dict[key].dim() == 2 else default


def _count_layers(state_dict, prefix):
    indices = {int(match[1]) for key in state_dict if (match := re.match(re.escape(prefix) + r"(\d+)\.", key))}
    return max(indices) + 1 if indices else 0


def _resnet_name(state_dict, prefix, sources):
    """torchvision ResNet name from the block structure under prefix (conv1, layer1.0.conv3, ...)."""
    bottleneck = f"{prefix}layer1.0.conv3.weight" in state_dict
    blocks = tuple(_count_layers(state_dict, f"{prefix}layer{stage}.") for stage in (1, 2, 3, 4))
    if (bottleneck, blocks) not in _RESNET_LAYOUTS:
        found = "bottleneck" if bottleneck else "basic"
        raise ModelFileError(f"the backbone weights are a ResNet with {found} blocks {list(blocks)} per stage "
                             f"(keys {sources.get(prefix + 'conv1.weight', prefix + 'conv1.weight')}, ...); "
                             f"supported: {sorted(_RESNET_LAYOUTS.values())}")
    return _RESNET_LAYOUTS[(bottleneck, blocks)]


def _model_name(backbone, dilation):
    return f"detr_r{backbone[len('resnet'):]}" + ("_dc5" if dilation else "")


def _keep_class_rows(state_dict, rows):
    """Keep the class-head rows `rows` and the last (no-object) row of class_embed."""
    for key in ("class_embed.weight", "class_embed.bias"):
        if key in state_dict and rows and max(rows) < state_dict[key].shape[0] - 1:
            keep = torch.tensor(list(rows) + [state_dict[key].shape[0] - 1])
            state_dict[key] = state_dict[key].index_select(0, keep)


def _detr_config(**fields):
    values = {"architecture": "detr", "input_size": list(_DETR_INPUT_SIZE),
              "matcher_class_cost": _DETR_MATCHER_CLASS_COST, **fields}
    try:
        return ModelConfig.from_dict(values, source="imported DETR")
    except ConfigError as error:
        raise ModelFileError(f"the checkpoint describes a DETR that cannot be built: {error}") from error


def _hf_backbone(hf_config):
    """(torchvision ResNet name, dilation, True if the transformers-ResNet key layout) of a DetrConfig."""
    backbone_config = hf_config.get("backbone_config") or {}
    model_type = backbone_config.get("model_type")
    if model_type == "resnet":
        bottleneck = backbone_config.get("layer_type", "bottleneck") == "bottleneck"
        depths = tuple(backbone_config.get("depths", (3, 4, 6, 3)))
        layout_supported = (
            (bottleneck, depths) in _RESNET_LAYOUTS
            and backbone_config.get("embedding_size", 64) == _TORCHVISION_STEM_WIDTH
            and list(backbone_config.get("hidden_sizes", _TORCHVISION_STAGE_WIDTHS[True]))
            == _TORCHVISION_STAGE_WIDTHS[bottleneck]
            and backbone_config.get("hidden_act", "relu") == "relu"
            # torchvision ResNets stride in the 3x3 convolution and not in the first stage
            and not backbone_config.get("downsample_in_bottleneck", False)
            and not backbone_config.get("downsample_in_first_stage", False))
        if not layout_supported:
            raise ModelFileError(
                "Hugging Face config: backbone_config describes a ResNet that is not one of "
                f"{sorted(_RESNET_LAYOUTS.values())} in torchvision's layout (layer_type, depths, embedding_size, "
                "hidden_sizes, hidden_act, downsample_in_bottleneck, downsample_in_first_stage)")
        if hf_config.get("dilation", False):
            raise ModelFileError("Hugging Face config: dilation with the transformers ResNet backbone is not supported")
        return _RESNET_LAYOUTS[(bottleneck, depths)], False, True
    if model_type == "timm_backbone":
        name = backbone_config.get("backbone", "resnet50")
        dilation = backbone_config.get("output_stride", 32) == 16 or hf_config.get("dilation", False)
    elif model_type is None and hf_config.get("use_timm_backbone", True):
        name = hf_config.get("backbone") or "resnet50"
        dilation = hf_config.get("dilation", False)
    else:
        raise ModelFileError(f"Hugging Face config: backbone {model_type or hf_config.get('backbone')!r} "
                             "is not supported; expected a ResNet (timm or transformers)")
    if name not in _RESNET_LAYOUTS.values():
        raise ModelFileError(f"Hugging Face config: timm backbone {name!r} is not supported; "
                             f"expected one of {sorted(_RESNET_LAYOUTS.values())}")
    return name, bool(dilation), False


_HF_BACKBONE_PREFIXES = ("model.backbone.conv_encoder.model.", "model.backbone.model.")
_HF_RESNET_RENAMES = (
    (r"embedder\.embedder\.convolution\.(.+)", lambda m: f"conv1.{m[1]}"),
    (r"embedder\.embedder\.normalization\.(.+)", lambda m: f"bn1.{m[1]}"),
    (r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.(.+)",
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.0.{m[3]}"),
    (r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.(.+)",
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.1.{m[3]}"),
    (r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.(.+)",
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.conv{int(m[3]) + 1}.{m[4]}"),
    (r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\.(.+)",
     lambda m: f"layer{int(m[1]) + 1}.{m[2]}.bn{int(m[3]) + 1}.{m[4]}"),
)
_HF_HEAD_RENAMES = (
    ("model.input_projection.", "input_proj."),
    ("model.query_position_embeddings.", "query_embed."),
    ("model.decoder.layernorm.", "transformer.decoder.norm."),
    ("class_labels_classifier.", "class_embed."),
    ("bbox_predictor.", "bbox_embed."),
)
# Per transformer layer; the final LayerNorm is norm2 in an encoder layer, norm3 in a decoder layer.
_HF_LAYER_RENAMES = (
    (r"self_attn\.(?:o_proj|out_proj)\.", "self_attn.out_proj."),
    (r"encoder_attn\.(?:o_proj|out_proj)\.", "multihead_attn.out_proj."),
    (r"encoder_attn\.", "multihead_attn."),
    (r"self_attn_layer_norm\.", "norm1."),
    (r"encoder_attn_layer_norm\.", "norm2."),
    (r"(?:mlp\.)?fc1\.", "linear1."),
    (r"(?:mlp\.)?fc2\.", "linear2."),
)


def _rename_hf(key, hf_resnet_layout):
    """Our name for a Hugging Face key; keys it does not know come back unchanged (and so unexpected)."""
    for prefix in _HF_BACKBONE_PREFIXES:
        if key.startswith(prefix):
            name = key[len(prefix):]
            if hf_resnet_layout:
                for pattern, rename in _HF_RESNET_RENAMES:
                    if match := re.fullmatch(pattern, name):
                        return "backbone.body." + rename(match)
                return key
            return "backbone.body." + name
    for prefix, new_prefix in _HF_HEAD_RENAMES:
        if key.startswith(prefix):
            return new_prefix + key[len(prefix):]
    match = re.fullmatch(r"model\.(encoder|decoder)\.layers\.(\d+)\.(.+)", key)
    if not match:
        return key
    part, index, name = match.groups()
    if name.startswith("final_layer_norm."):
        name = ("norm2." if part == "encoder" else "norm3.") + name[len("final_layer_norm."):]
    for pattern, replacement in _HF_LAYER_RENAMES:
        name, count = re.subn("^" + pattern, replacement, name)
        if count:
            break
    return f"transformer.{part}.layers.{index}.{name}"


def _fuse_qkv(attention_parts, renamed, sources):
    """Concatenate q, k, v projections (in that order) into nn.MultiheadAttention's in_proj."""
    for (attention, parameter), parts in attention_parts.items():
        if set(parts) != {"q", "k", "v"} or len({tuple(v.shape[1:]) for _, v in parts.values()}) != 1:
            # Incomplete or inconsistent: leave them under their own names so they are reported.
            for source_key, value in parts.values():
                renamed[source_key] = value
                sources[source_key] = source_key
            continue
        fused_key = f"{attention}.in_proj_{parameter}"
        renamed[fused_key] = torch.cat([parts[p][1] for p in "qkv"])
        sources[fused_key] = " + ".join(parts[p][0] for p in "qkv")


def _hf_class_rows(hf_config, num_rows):
    """(rows kept, their category ids, their names) from id2label; rows named "N/A" are unused ids.

    transformers names unnamed classes LABEL_<i>: those are no names (None)."""
    id2label = {int(index): name for index, name in (hf_config.get("id2label") or {}).items()}
    if not id2label:
        rows = list(range(max(num_rows - 1, 1)))
        return rows, rows, None
    rows = [index for index in sorted(id2label) if id2label[index] != UNUSED_LABEL]
    names = [id2label[index] for index in rows]
    if all(re.fullmatch(r"LABEL_\d+", name) for name in names):
        names = None
    return rows, rows, names


def _check_fits(model_config, state_dict, sources, origin):
    """Raise ModelFileError unless state_dict loads into build_detr(model_config) with strict=True."""
    with torch.device("meta"):
        expected = {key: value.shape for key, value in build_detr(model_config).state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(sources[key] for key in set(state_dict) - set(expected))
    misshaped = sorted(f"{sources[key]} {list(state_dict[key].shape)} (expected {list(expected[key])})"
                       for key in set(state_dict) & set(expected) if state_dict[key].shape != expected[key])
    if missing or unexpected or misshaped:
        problems = [f"{label}: {_listing(keys)}" for label, keys in
                    (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped keys", misshaped))
                    if keys]
        raise ModelFileError(
            f"{origin} weights do not fit a DETR with {model_config.detr_backbone}, hidden_dim "
            f"{model_config.hidden_dim}, {model_config.enc_layers}+{model_config.dec_layers} layers, "
            f"{model_config.num_queries} queries, {model_config.num_classes} classes; " + "; ".join(problems))


def _listing(keys):
    shown = ", ".join(keys[:_MAX_KEYS_LISTED])
    return shown + (f" and {len(keys) - _MAX_KEYS_LISTED} more" if len(keys) > _MAX_KEYS_LISTED else "")
