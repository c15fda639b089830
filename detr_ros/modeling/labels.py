"""Class-name files: which name and dataset category id each training class has.

Two formats are read:
  .yaml / .yml / .json  a list of {id: <category id>, name: <name>}, one entry per training class
                        in order (config/labels/coco.yaml ships the 80 COCO classes);
  .txt                  one name per line; category ids are then 0, 1, 2, ...
"""

import json
import sys
from pathlib import Path

import yaml

from detr_ros.errors import ConfigError

# In a source checkout the file sits in config/; an installed package has it under share/detr_ros/.
_COCO_CANDIDATES = (
    Path(__file__).resolve().parents[2] / "config" / "labels" / "coco.yaml",
    Path(sys.prefix) / "share" / "detr_ros" / "config" / "labels" / "coco.yaml",
)


def load_labels(path):
    """Read a labels file -> (class_names list[str], category_ids list[int]). Errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read labels file {path}: {error.strerror}") from error
    if path.suffix == ".txt":
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if not names:
            raise ConfigError(f"labels file {path} has no names")
        return names, list(range(len(names)))
    try:
        entries = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"labels file {path} cannot be parsed: {error}") from error
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"labels file {path}: expected a non-empty list of {{id, name}} entries")
    names, ids = [], []
    for position, entry in enumerate(entries):
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("id"), int)):
            raise ConfigError(f"labels file {path}: entry {position} must be {{id: <integer>, name: <text>}}, got {entry!r}")
        names.append(entry["name"])
        ids.append(entry["id"])
    if len(set(ids)) != len(ids):
        raise ConfigError(f"labels file {path}: category ids repeat")
    return names, ids


def coco_labels():
    """The 80 COCO classes shipped with the package -> (names, category ids)."""
    for candidate in _COCO_CANDIDATES:
        if candidate.is_file():
            return load_labels(candidate)
    raise ConfigError(f"the shipped COCO labels file is missing (looked for {', '.join(map(str, _COCO_CANDIDATES))})")
