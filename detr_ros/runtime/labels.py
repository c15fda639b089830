"""Class names: which name and dataset category id each training class has, from a file or by default.

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

COCO_CLASSES = 80
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


def names_for_unnamed_graph(num_classes, category_slots):
    """(names, category ids, what they are) for a graph whose file and options name no class.

    num_classes: classes the graph scores, or None where its shape does not say.
    category_slots: whether the graph's class index is itself a COCO category id (a 91-slot head).
    An 80-class graph is taken for COCO's 80 classes, as a 91-slot one is for COCO's ids: what the
    published weights of every known format are trained on; the log says so.
    """
    if num_classes == COCO_CLASSES or category_slots:
        names, ids = coco_labels()
        if category_slots:
            by_id = dict(zip(ids, names))
            return ([by_id.get(i, f"class_{i}") for i in range(num_classes)], list(range(num_classes)),
                    "COCO names by category id (no names in the file; labels_path names them)")
        return names, ids, "COCO's 80 names (no names in the file; labels_path names them)"
    if num_classes is None:
        return [], [], "class_N (no names in the file and a graph that does not say how many; labels_path names them)"
    return ([f"class_{i}" for i in range(num_classes)], list(range(num_classes)),
            "class_N (no names in the file; labels_path names them)")
