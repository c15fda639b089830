"""Small typed configs read from YAML: a dataclass filled from a mapping, each value checked against
its annotation, unknown keys refused, errors naming the source. Used by the model and training configs."""

import dataclasses
import typing
from pathlib import Path

import yaml

from detr_ros.errors import ConfigError


def checked_value(name, value, annotation, source):
    """``value`` as the annotation's type (bool, int, float, str, or a list of integers), else ConfigError."""
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {name} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {name} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {name} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {name} must be a string, got {value!r}")
        return value
    if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise ConfigError(f"{source}: {name} must be a list of integers, got {value!r}")
    return list(value)


def config_from_mapping(cls, values, source, what):
    """An instance of the dataclass ``cls`` from ``values``, validated by its ``validate(source)``.

    Missing fields take their defaults; unknown fields and wrong types raise ConfigError naming ``source``;
    ``what`` says what the mapping holds ("model settings"), for a value that is no mapping at all.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of {what}, found {type(values).__name__}")
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    config = cls(**{name: checked_value(name, value, hints[name], source) for name, value in values.items()})
    config.validate(source)
    return config


def read_yaml(path, what):
    """The content of a YAML file, with ConfigError naming ``what`` (e.g. "model config") and the path.

    An empty file reads as an empty mapping.
    """
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{what} {path} is not valid YAML: {error}") from error
    return {} if values is None else values
