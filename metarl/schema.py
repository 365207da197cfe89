"""Config fields and their strict checks: the part of configuration every kind shares.

The kinds' dataclasses (``rl.config``, ``supervised.config``) declare their keys
with ``spec``; ``from_dict`` builds one from a mapping, refusing unknown keys,
wrong types and out-of-range values with one line naming the key. Reading YAML
and picking the kind is ``metarl.config``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from typing import Any, Literal


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


def keep_checkpoint_spec() -> Any:
    """``keep_checkpoint_every``, a key of every kind of run (``runs.Run.save`` reads it)."""
    return spec(None, low=1,
                doc="also keep checkpoint-N.pt every N iterations (metarl evaluate "
                    "--checkpoint evaluates the training curve from them later)")


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
