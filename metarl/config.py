"""Typed, strict configuration: YAML -> dataclasses.

Every run is described by one YAML file whose ``kind`` key picks the
dataclass. Unknown keys, wrong types and out-of-range values are one-line
``ConfigError``s naming the key and what is allowed, raised before any work.
``--set key=value`` overrides are parsed as YAML scalars (``--set
hidden_sizes=[64,64]`` works too).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A user's configuration is wrong; the message says what would be right."""


def spec(default: Any, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, doc: str = "") -> Any:
    """A dataclass field with a range check (``low <= v <= high``, or ``low < v``)."""
    meta = {"low": low, "high": high, "low_open": low_open, "doc": doc}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def time_limit_spec() -> Any:
    """``time_limit_minutes``, a key of every kind of run (``runs.TrainingLoop`` reads it)."""
    return spec(None, low=0, low_open=True,
                doc="stop with a checkpoint after this many minutes in this process "
                    "(resume later)")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(tp, str(tp))


_EXPONENT_FLOAT = re.compile(r"[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin is list:
        if isinstance(value, (list, tuple)):
            return [_coerce(f"{key}[{i}]", v, typing.get_args(tp)[0]) for i, v in enumerate(value)]
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(key, value, arg)
            except ConfigError:
                pass
    elif tp is float:
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-5 (no dot) as a string
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # NaN passes every range check
                raise ConfigError(f"config key '{key}': must be a finite number, got {value!r}")
            return float(value)
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is type(None):
        if value is None:
            return None
    elif isinstance(value, tp):
        return value
    raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")


def _check_range(key: str, value: Any, meta: dict) -> None:
    low, high = meta.get("low"), meta.get("high")
    values = value if isinstance(value, list) else [value]
    for v in values:
        if not isinstance(v, (int, float)):
            continue
        if low is not None and (v <= low if meta.get("low_open") else v < low):
            bound = f"> {low}" if meta.get("low_open") else f">= {low}"
            raise ConfigError(f"config key '{key}': must be {bound}, got {value!r}")
        if high is not None and v > high:
            raise ConfigError(f"config key '{key}': must be <= {high}, got {value!r}")


def from_dict(cls: type, data: dict[str, Any], source: str = "config",
              overridden: frozenset[str] = frozenset()) -> Any:
    """Build dataclass ``cls`` from ``data``, strictly.

    overridden: keys that came from ``--set``: their errors say so, not ``source``.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys to values, "
                          f"got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            origin = "--set" if key in overridden else source
            raise ConfigError(f"{origin}: unknown config key '{key}'{hint}; "
                              f"allowed keys: {', '.join(fields)}")
    values = {}
    for key, value in data.items():
        try:
            values[key] = _coerce(key, value, hints[key])
            _check_range(key, values[key], dict(fields[key].metadata))
        except ConfigError as err:
            raise ConfigError(f"--set: {err}" if key in overridden else str(err)) from None
    config = cls(**values)
    if hasattr(config, "validate"):
        config.validate()
    return config


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


def config_classes() -> dict[str, type]:
    """``kind`` -> dataclass. Imported lazily so config stays free of algorithm code."""
    from metarl.rl.config import RLConfig
    from metarl.supervised.config import FewshotConfig, SinusoidConfig

    return {"sinusoid": SinusoidConfig, "rl": RLConfig, "fewshot": FewshotConfig}


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                data: dict[str, Any] | None = None) -> Any:
    """Read a YAML file (or ``data``), apply ``--set`` overrides, return the typed config."""
    raw = dict(data or {}) if path is None else read_yaml(path)
    overridden = parse_overrides(overrides or [])
    raw.update(overridden)
    source = str(path) if path is not None else "config"
    classes = config_classes()
    kind = raw.get("kind")
    if kind not in classes:
        raise ConfigError(f"{source}: config key 'kind' must be one of "
                          f"{', '.join(repr(k) for k in classes)}, got {kind!r}")
    return from_dict(classes[kind], raw, source, frozenset(overridden))


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
