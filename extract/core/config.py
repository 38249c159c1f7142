"""Params sections into typed, frozen config objects: one loader for every section.

Views, backbones, encoders, `prepare`, heads and the report all go through `build_config`. Each
value is coerced by its field's annotation (int, float, bool, str, optional, tuples, lists,
mappings) before the section's own `validate` runs. A wrong key or type is one `ConfigError`
naming `section.key`, the value and what was expected, and it is raised before any file is touched.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union

from extract.core.errors import UserError


class ConfigError(UserError):
    """A params section that is malformed; the message names the key and the fix."""


def build_config(cls: type, values: dict[str, Any], where: str):
    """An instance of the config dataclass `cls` from a params mapping, every value checked by type."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {values!r} is not a mapping of keys to values")
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {names}")
    hints = typing.get_type_hints(cls)
    coerced = {key: coerce(value, hints[key], f"{where}.{key}") for key, value in values.items()}
    try:
        config = cls(**coerced)
    except TypeError as exc:  # a required key left out
        raise ConfigError(f"{where}: {exc}") from None
    config.validate(where)
    return config


def coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` as the annotation `hint` says, or a ConfigError naming `where`, the value and the type.

    Numbers are taken from YAML's strings too (PyYAML reads `1e-3` as a string); a float that is
    whole is an integer; lists become tuples where a tuple is wanted."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        for option in options:
            try:
                return coerce(value, option, where)
            except ConfigError:
                continue
        wanted = " or ".join([*(expected(o) for o in options), *(["null"] if type(None) in args else [])])
        raise ConfigError(f"{where}: {value!r} is not {wanted}")
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list):
        if isinstance(value, (list, tuple)):
            if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
                raise ConfigError(f"{where}: {value!r} needs {len(args)} values")
            kinds = [args[0]] * len(value) if origin is list or args[-1] is Ellipsis else list(args)
            items = [
                coerce(item, kind, f"{where}[{i}]") for i, (item, kind) in enumerate(zip(value, kinds, strict=True))
            ]
            return tuple(items) if origin is tuple else items
    elif origin is dict:
        if isinstance(value, dict):
            key_hint, value_hint = args or (Any, Any)
            return {coerce(k, key_hint, f"{where}"): coerce(v, value_hint, f"{where}.{k}") for k, v in value.items()}
    else:
        return value
    raise ConfigError(f"{where}: {value!r} is not {expected(hint)}")


def expected(hint: Any) -> str:
    """How an error names what a key takes."""
    origin = typing.get_origin(hint)
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if origin in (tuple, list):
        return "a list"
    if origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))
