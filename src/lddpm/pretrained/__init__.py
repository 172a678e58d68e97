"""Models shipped inside the package: inference-only exports (`lddpm export`), found by name.

    lddpm-x4/config.json          config, version, training step, sampling defaults
    lddpm-x4/model.safetensors    EMA weights, bf16, without the training-only parts
"""

from __future__ import annotations

import json
from pathlib import Path

from lddpm.errors import UserError

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = "lddpm-x4"


def shipped_models() -> dict[str, Path]:
    """name -> directory, for every complete export shipped here."""
    return {
        p.name: p for p in sorted(HERE.iterdir())
        if (p / "config.json").is_file() and (p / "model.safetensors").is_file()
    }


def resolve_model(name_or_path: str | Path | None) -> Path:
    """None -> the default shipped model; a shipped name -> its directory; else a path."""
    models = shipped_models()
    name = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    if name in models:
        return models[name]
    if name_or_path is None:
        raise UserError(f"the shipped model {DEFAULT_MODEL} is missing from this install; "
                        "give a checkpoint", option="checkpoint")
    path = Path(name_or_path)
    if not path.exists():
        known = ", ".join(models) or "none"
        raise UserError(f"no checkpoint or shipped model named {name_or_path!r} (shipped: {known})")
    return path


def describe(name: str) -> dict:
    """What `lddpm models` prints about a shipped model."""
    meta = json.loads((shipped_models()[name] / "config.json").read_text())
    cfg = meta["config"]
    return {
        "name": name,
        "preset": cfg["preset"],
        "scale": cfg["data"]["scale"],
        "trained_steps": meta.get("exported_from_step"),
        "inference": meta.get("inference", {}),
        "description": meta.get("description", ""),
        "default": name == DEFAULT_MODEL,
    }
