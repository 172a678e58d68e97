"""Renamed config keys: configs written under the old names (checkpoints, YAML, --set) load."""

from __future__ import annotations

from pathlib import Path

from lddpm import checkpoint as ckpt
from lddpm.config import apply_overrides, build_preset, config_from_dict, load_config_file

PRE14 = Path(__file__).parent / "fixtures" / "pre14" / "export"


def test_gan_steps_is_now_gan_chain_steps_and_old_configs_still_load(tmp_path):
    saved = ckpt.read_config(PRE14)  # written with "gan": {"steps": 4, ...}
    assert saved.gan.enabled and saved.gan.chain_steps == 4
    assert config_from_dict({"gan": {"enabled": True, "steps": 6}}).gan.chain_steps == 6
    assert apply_overrides(build_preset("tiny+gan"), ["gan.steps=2"]).gan.chain_steps == 2
    (tmp_path / "old.yaml").write_text("preset: tiny+gan\ngan:\n  steps: 3\n")
    assert load_config_file(tmp_path / "old.yaml").gan.chain_steps == 3
    assert "steps" not in build_preset("tiny+gan").to_dict()["gan"]
