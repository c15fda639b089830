"""detr_ros checkpoint files: one torch file with the model config, weights and class names.

Written atomically (temporary file, then os.replace) so that an interrupted save never leaves a
half-written checkpoint in place, and read with ``torch.load(weights_only=True)`` so that loading a
file never runs code stored in it.
"""

import argparse
import os
import pickle
import tempfile
from pathlib import Path

import torch

from detr_ros.errors import ConfigError, ModelFileError
from detr_ros.modeling.build import build_model
from detr_ros.modeling.config import ModelConfig

CHECKPOINT_KEYS = ("model_config", "state_dict", "class_names", "category_ids", "extra")


def save_checkpoint(path, *, model_config, state_dict, class_names, category_ids, extra=None):
    """Write a checkpoint to ``path`` atomically.

    model_config: ModelConfig.to_dict(); state_dict: the model's weights (moved to CPU);
    class_names[i] / category_ids[i]: name and dataset category id of training class i;
    extra: optional dict of plain values (numbers, strings, lists, dicts, tensors), e.g. the epoch.
    """
    if len(class_names) != len(category_ids):
        raise ValueError(f"{len(class_names)} class names but {len(category_ids)} category ids")
    _check_plain(extra or {}, "extra")
    payload = {
        "model_config": dict(model_config),
        "state_dict": {key: value.detach().cpu() for key, value in state_dict.items()},
        "class_names": [str(name) for name in class_names],
        "category_ids": [int(i) for i in category_ids],
        "extra": dict(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


_PLAIN_TYPES = (str, int, float, bool, type(None), torch.Tensor)


def _check_plain(value, where):
    """Refuse what load_checkpoint (weights_only) could not read back."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(key, where)
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
    elif not isinstance(value, _PLAIN_TYPES):
        raise ValueError(f"{where} holds a {type(value).__name__}; checkpoints store only plain values and tensors")


# torch.save writes a zip archive; files from PyTorch before 1.6 are a pickle (protocol 2 and later).
TORCH_FILE_SIGNATURES = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def read_torch_file(path):
    """torch.load(path, weights_only=True) with every failure turned into a ModelFileError."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such file")
    with open(path, "rb") as file:
        head = file.read(4)
    if not head.startswith(TORCH_FILE_SIGNATURES):
        raise ModelFileError(f"{path}: not a PyTorch checkpoint (a .pt or .pth file is a zip archive or a pickle; "
                             f"this one starts with {head!r})")
    try:
        # facebookresearch/detr training checkpoints carry their argparse options: plain attributes.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ModelFileError(
            f"{path}: refused to load: the file holds Python objects other than weights, or is corrupt "
            f"(only tensors, numbers, strings, lists and dicts are accepted): {_unpickler_reason(error)}"
        ) from error
    except Exception as error:  # the unpickler fails on corrupt data in any way (KeyError, IndexError, ...)
        raise ModelFileError(f"{path}: not a readable PyTorch file (truncated or corrupt?): "
                             f"{type(error).__name__}: {_first_line(error)}") from error


def _first_line(error):
    return str(error).strip().split("\n")[0]


def _unpickler_reason(error):
    """The line of torch's weights-only refusal that names what it met (its first lines are advice)."""
    text = str(error)
    _, marker, reason = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in reason.splitlines() if line.strip()] if marker else []
    return lines[0] if lines else _first_line(error)


def load_checkpoint(path):
    """Read a detr_ros checkpoint -> dict with CHECKPOINT_KEYS. Errors are ModelFileError naming ``path``."""
    checkpoint = read_torch_file(path)
    if not isinstance(checkpoint, dict) or not all(key in checkpoint for key in CHECKPOINT_KEYS):
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ModelFileError(
            f"{path}: not a detr_ros checkpoint: expected keys {list(CHECKPOINT_KEYS)}, found {found} "
            "(official or Hugging Face checkpoints must first go through `detr-ros convert`)"
        )
    if len(checkpoint["class_names"]) != len(checkpoint["category_ids"]):
        raise ModelFileError(
            f"{path}: {len(checkpoint['class_names'])} class names but {len(checkpoint['category_ids'])} category ids"
        )
    return checkpoint


def load_state_dict_checked(model, state_dict, source):
    """Load ``state_dict`` into ``model`` exactly, or raise ModelFileError naming the keys that don't fit.

    ``num_batches_tracked`` entries the model has no place for (frozen batch norms) carry no
    weights and are skipped.
    """
    expected = model.state_dict()
    state_dict = {
        key: value
        for key, value in state_dict.items()
        if key in expected or not key.endswith("num_batches_tracked")
    }
    missing = sorted(set(expected) - set(state_dict) - _optional_keys(expected))
    unexpected = sorted(set(state_dict) - set(expected))
    misshaped = sorted(
        f"{key} (file {tuple(state_dict[key].shape)}, model {tuple(expected[key].shape)})"
        for key in set(state_dict) & set(expected)
        if state_dict[key].shape != expected[key].shape
    )
    if missing or unexpected or misshaped:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if keys:
                shown = ", ".join(keys[:20]) + (f", ... ({len(keys)} in all)" if len(keys) > 20 else "")
                parts.append(f"{label} keys: {shown}")
        raise ModelFileError(f"{source}: weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=False)


def _optional_keys(expected):
    return {key for key in expected if key.endswith("num_batches_tracked")}


def model_config_from_checkpoint(checkpoint, path):
    """The validated ModelConfig stored in a checkpoint; ModelFileError if it is invalid."""
    try:
        return ModelConfig.from_dict(checkpoint["model_config"], source=f"{path} (model_config)")
    except ConfigError as error:
        raise ModelFileError(str(error)) from error


def load_model(path):
    """Build the model stored in a checkpoint and load its weights -> (model in eval mode, checkpoint dict)."""
    checkpoint = load_checkpoint(path)
    model = build_model(model_config_from_checkpoint(checkpoint, path))
    load_state_dict_checked(model, checkpoint["state_dict"], str(path))
    return model.eval(), checkpoint
