"""``detr-ros convert SOURCE OUTPUT``: import a published checkpoint into a detr_ros checkpoint.

SOURCE is one of (detected from its content; ``--kind`` overrides):
  rtdetr-official  lyuwenyu/RT-DETR v1/v2 .pth (weights under ``ema.module`` or ``model``)
  rtdetr-hf        transformers RTDetr(V2)ForObjectDetection: a folder with config.json and
                   model.safetensors or pytorch_model.bin, or one of those files next to config.json
  detr-official    facebookresearch/detr .pth (e.g. detr-r50-e632da11.pth)
  detr-hf          transformers DetrForObjectDetection, laid out like rtdetr-hf
Nothing is unpickled beyond tensors and plain containers (safetensors, or torch.load with
weights_only=True). Class names come from --labels when given, else from the checkpoint
(Hugging Face id2label), else the shipped COCO names when the class count is COCO's.
"""

import hashlib
import json
import re
from pathlib import Path

from detr_ros.errors import ConfigError, ModelFileError
from detr_ros.modeling.build import build_model
from detr_ros.modeling.checkpoint import load_state_dict_checked, read_torch_file, save_checkpoint
from detr_ros.modeling.config import load_model_config
from detr_ros.modeling.import_rtdetr import rtdetr_state_dict_from_hf, rtdetr_state_dict_from_official
from detr_ros.runtime.labels import coco_labels, load_labels

KINDS = ("rtdetr-official", "rtdetr-hf", "detr-official", "detr-hf")
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HF_MODEL_TYPES = {"rt_detr": "rtdetr-hf", "rt_detr_v2": "rtdetr-hf", "detr": "detr-hf"}


def convert(source, output, kind=None, labels_path=None, config_path=None):
    """Convert ``source`` and write ``output``; returns a summary dict (kind, model_config, class_names,
    category_ids, num_parameters). Raises ModelFileError / ConfigError naming the problem."""
    source = Path(source)
    state_dict, hf_config, detected = read_source(source)
    kind = kind or detected
    if kind is None:
        raise ModelFileError(
            f"{source}: cannot tell what kind of checkpoint this is (no RT-DETR or DETR keys found); "
            f"pass --kind ({', '.join(KINDS)})"
        )
    if kind.endswith("-hf") and hf_config is None:
        raise ModelFileError(f"{source}: a Hugging Face checkpoint needs its config.json next to the weights")

    names = category_ids = None
    if kind == "rtdetr-official":
        base = load_model_config(config_path) if config_path else None
        config, weights = rtdetr_state_dict_from_official(state_dict, base, str(source))
    elif kind == "rtdetr-hf":
        config, weights = rtdetr_state_dict_from_hf(state_dict, hf_config, str(source))
        names = _hf_class_names(hf_config)
    else:
        from detr_ros.modeling import import_detr

        if kind == "detr-official":
            imported = import_detr.detr_config_and_state_dict_from_official(state_dict)
        else:
            imported = import_detr.detr_config_and_state_dict_from_hf(state_dict, hf_config)
        config, weights = imported.model_config, imported.state_dict
        names, category_ids = imported.class_names, list(imported.category_ids)

    model = build_model(config)
    load_state_dict_checked(model, weights, str(source))
    names, category_ids = _class_names(config.num_classes, names, category_ids, labels_path, source)
    save_checkpoint(
        output,
        model_config=config.to_dict(),
        state_dict=model.state_dict(),
        class_names=names,
        category_ids=category_ids,
        extra={"source": str(source), "source_kind": kind, "source_sha256": _sha256(source)},
    )
    return {
        "kind": kind,
        "model_config": config.to_dict(),
        "class_names": names,
        "category_ids": category_ids,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }


def read_source(source):
    """Load the weights of ``source`` -> (state_dict, hf_config dict or None, detected kind or None)."""
    if source.is_dir():
        weights = next((source / name for name in HF_WEIGHT_FILES if (source / name).is_file()), None)
        if weights is None:
            raise ModelFileError(f"{source}: folder has none of {', '.join(HF_WEIGHT_FILES)}")
        source = weights
    if not source.is_file():
        raise ModelFileError(f"{source}: no such file")
    hf_config = _read_hf_config(source.parent / "config.json")
    if source.suffix == ".safetensors":
        state_dict = _read_safetensors(source)
    else:
        state_dict = _unwrap(read_torch_file(source), source)
    return state_dict, hf_config, _detect_kind(state_dict, hf_config)


def _read_safetensors(path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable safetensors file (truncated or corrupt?): {error}") from error


def _read_hf_config(path):
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: cannot read the Hugging Face config: {error}") from error
    return config if isinstance(config, dict) and "model_type" in config else None


def _unwrap(content, path):
    """The state dict inside an official training checkpoint (EMA weights preferred)."""
    if isinstance(content, dict) and isinstance(content.get("ema"), dict) and isinstance(content["ema"].get("module"), dict):
        content = content["ema"]["module"]
    elif isinstance(content, dict) and isinstance(content.get("model"), dict):
        content = content["model"]
    elif isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        content = content["state_dict"]
    if not isinstance(content, dict) or not all(hasattr(v, "shape") for v in content.values()):
        raise ModelFileError(f"{path}: no state dict of tensors found (looked at ema.module, model, state_dict and the top level)")
    return content


def _detect_kind(state_dict, hf_config):
    if hf_config is not None and any(k.startswith("model.") for k in state_dict):
        return HF_MODEL_TYPES.get(hf_config["model_type"])
    if any(k.startswith("decoder.dec_score_head.") for k in state_dict):
        return "rtdetr-official"
    if "query_embed.weight" in state_dict and any(k.startswith("transformer.") for k in state_dict):
        return "detr-official"
    return None


def _hf_class_names(hf_config):
    id2label = hf_config.get("id2label") or {}
    names = [id2label[key] for key in sorted(id2label, key=int)]
    # transformers fills unnamed classes with LABEL_<i>: that is no name.
    if not names or all(re.fullmatch(r"LABEL_\d+", name) for name in names):
        return None
    return names


def _class_names(num_classes, names, category_ids, labels_path, source):
    if labels_path is not None:
        names, ids = load_labels(labels_path)
        if len(names) != num_classes:
            raise ConfigError(f"labels file {labels_path} has {len(names)} classes, the model {num_classes}")
        return names, ids
    coco_names, coco_ids = coco_labels()
    if names is not None:
        if len(names) != num_classes:
            raise ModelFileError(f"{source}: {len(names)} class names for {num_classes} classes")
        if category_ids is None:
            category_ids = coco_ids if names == coco_names else list(range(num_classes))
        return names, category_ids
    if category_ids is not None and set(category_ids) <= set(coco_ids):
        by_id = dict(zip(coco_ids, coco_names))
        return [by_id[i] for i in category_ids], category_ids
    if num_classes == len(coco_names):
        return coco_names, coco_ids
    raise ConfigError(f"{source}: the checkpoint has {num_classes} classes and no names; pass --labels FILE")


def _sha256(path):
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
