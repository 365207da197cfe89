"""Typed, strict configuration: YAML -> dataclasses.

Every run is described by one YAML file whose ``kind`` key picks the
dataclass. Unknown keys, wrong types and out-of-range values are one-line
``ConfigError``s naming the key and what is allowed, raised before any work.
``--set key=value`` overrides are parsed as YAML scalars (``--set
hidden_sizes=[64,64]`` works too).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from metarl.rl.config import RLConfig
from metarl.schema import ConfigError, from_dict
from metarl.supervised.config import FewshotConfig, SinusoidConfig

__all__ = ["ConfigError", "load_config", "save_config", "to_dict", "CONFIG_CLASSES"]


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["a=1", "b=[2,3]"]`` -> ``{"a": 1, "b": [2, 3]}``."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({err})") from None
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (it keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (lines {seen[key] + 1} and "
                    f"{key_node.start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    return data


CONFIG_CLASSES = {"sinusoid": SinusoidConfig, "rl": RLConfig, "fewshot": FewshotConfig}
"""``kind`` -> dataclass."""


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                data: dict[str, Any] | None = None) -> Any:
    """Read a YAML file (or ``data``), apply ``--set`` overrides, return the typed config."""
    raw = dict(data or {}) if path is None else read_yaml(path)
    overridden = parse_overrides(overrides or [])
    raw.update(overridden)
    source = str(path) if path is not None else "config"
    classes = CONFIG_CLASSES
    kind = raw.get("kind")
    if kind not in classes:
        raise ConfigError(f"{source}: config key 'kind' must be one of "
                          f"{', '.join(repr(k) for k in classes)}, got {kind!r}")
    return from_dict(classes[kind], raw, source, frozenset(overridden))


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
