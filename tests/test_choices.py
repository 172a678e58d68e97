"""Each choice is listed once, in lddpm.config.schema; the modules that implement the choices
implement exactly those."""

from __future__ import annotations

from lddpm import config
from lddpm.data.degradations import RESIZE_MODES
from lddpm.diffusion import samplers
from lddpm.losses.perceptual import _BACKBONE_CHOICES


def test_implementations_match_the_schema_choices():
    assert tuple(RESIZE_MODES) == config.DOWNSAMPLE_MODES
    assert tuple(_BACKBONE_CHOICES) == config.PERCEPTUAL_BACKBONES
    assert samplers.SAMPLERS is config.SAMPLERS


def test_the_old_import_paths_of_the_config_keep_working():
    from lddpm.config import (  # noqa: F401  (what the benchmarks and scripts import)
        Config,
        DataConfig,
        apply_overrides,
        build_preset,
        config_from_dict,
        describe_presets,
        inert_keys,
        load_config_file,
    )

    assert build_preset("tiny+v3").preset == "tiny+v3"
