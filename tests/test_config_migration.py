"""Renamed config keys and modules: what older versions wrote (checkpoints, YAML, --set) loads."""

from __future__ import annotations

from pathlib import Path

import torch

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


def test_glow_flow_steps_load_from_checkpoints_that_called_them_steps():
    from safetensors.torch import load_file

    from lddpm.inference import Upscaler

    old_keys = load_file(str(PRE14 / "model.safetensors"))
    assert any(k.startswith("prior.flow.steps.") for k in old_keys)
    up = Upscaler.from_pretrained(PRE14)
    loaded = up.net.state_dict()
    for key, value in old_keys.items():
        new = key.replace("prior.flow.steps.", "prior.flow.flow_steps.")
        assert torch.equal(loaded[new], value.float()), key
