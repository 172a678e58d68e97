"""Config from dicts, YAML/JSON files and `--set key=value` overrides, strictly: unknown
keys are errors that list the valid ones, values are coerced to the field's type."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from lddpm.config.presets import build_preset
from lddpm.config.schema import Config, validate
from lddpm.errors import UserError


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"{key} must be a mapping, got {value!r}")
        return _from_dict(tp, value, key + ".")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
        elem = args[0] if args else Any
        return tuple(_coerce(v, elem, key) for v in value)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = next(a for a in args if a is not type(None))
        return _coerce(value, inner, key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise UserError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        # YAML 1.1 reads '1e-4' (no dot) as a string: accept numeric strings for floats,
        # else `--set train.lr=1e-4` is refused.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        return str(value)
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise UserError(
            f"unknown config key '{prefix}{unknown[0]}'; valid keys: "
            + ", ".join(prefix + n for n in names)
        )
    obj = cls()
    for k, v in data.items():
        setattr(obj, k, _coerce(v, hints[k], prefix + k))
    return obj


# Keys renamed since configs were first written (checkpoints, YAML files, --set): old -> new.
RENAMED = {("gan", "steps"): "chain_steps"}  # the chain length K, not a sampling step count


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with renamed keys under their current names (a copy; `data` is unchanged), so
    older checkpoints, files and `--set` lines keep working."""
    out = dict(data)
    for (section, old), new in RENAMED.items():
        if isinstance(out.get(section), dict) and old in out[section]:
            part = dict(out[section])
            value = part.pop(old)
            out[section] = {**part, new: part.get(new, value)}
    return out


def config_from_dict(data: dict[str, Any]) -> Config:
    """A full or partial config dict (as saved in checkpoints) -> a validated Config."""
    cfg = _from_dict(Config, migrate(data))
    validate(cfg)
    return cfg


def load_config_file(path: str | Path) -> Config:
    """A YAML or JSON file: either a full config, or `preset: NAME` plus overrides."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: the top level must be a mapping")
    base = build_preset(data["preset"]) if "preset" in data else Config()
    return merge(base, data)


def merge(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Deep-merges a (partial) dict into a config, strictly."""
    merged = _deep_update(cfg.to_dict(), migrate(overrides), "")
    return config_from_dict(merged)


def _deep_update(base: dict[str, Any], upd: dict[str, Any], prefix: str) -> dict[str, Any]:
    out = dict(base)
    for k, v in upd.items():
        if k not in base:
            raise UserError(
                f"unknown config key '{prefix}{k}'; valid keys: "
                + ", ".join(prefix + n for n in base)
            )
        if isinstance(base[k], dict) and isinstance(v, dict):
            out[k] = _deep_update(base[k], v, prefix + k + ".")
        else:
            out[k] = v
    return out


def apply_overrides(cfg: Config, assignments: list[str]) -> Config:
    """`--set model.unet.dropout=0.1 --set data.scale=2` (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in assignments:
        if "=" not in item:
            raise UserError(f"--set expects key.sub=value, got '{item}'")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = nested
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return merge(cfg, nested)
