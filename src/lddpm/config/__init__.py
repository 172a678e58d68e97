"""Configuration: dataclasses, named presets that compose with `+`, strict overrides.

    schema.py    the sections (dataclasses), their choice tuples and checks
    presets.py   sizes and method parts: `build_preset("small+v3+glow+gan")`
    parsing.py   dicts, YAML/JSON files and `--set` overrides, with strict key checking

Everything is importable from `lddpm.config` itself.
"""

from lddpm.config.parsing import (
    apply_overrides,
    config_from_dict,
    load_config_file,
    merge,
)
from lddpm.config.presets import (
    ALIASES,
    DEFAULT_PRESET,
    PARTS,
    RESIDUAL_SCALE,
    SIZES,
    build_preset,
    describe_presets,
)
from lddpm.config.schema import (
    DEGRADATIONS,
    DOWNSAMPLE_MODES,
    PERCEPTUAL_BACKBONES,
    PRECISIONS,
    PREDICTIONS,
    SAMPLERS,
    SCHEDULES,
    TARGETS,
    TIME_WEIGHTINGS,
    TIMESTEP_RULES,
    Config,
    CVAEConfig,
    DataConfig,
    DegradationConfig,
    DiffusionConfig,
    EncoderConfig,
    GANConfig,
    GlowConfig,
    LossConfig,
    ModelConfig,
    TrainConfig,
    UNetConfig,
    check_choice,
    check_data,
    hr_size_multiple,
    inert_keys,
    validate,
)

__all__ = [
    "ALIASES",
    "DEFAULT_PRESET",
    "DEGRADATIONS",
    "DOWNSAMPLE_MODES",
    "PARTS",
    "PERCEPTUAL_BACKBONES",
    "PRECISIONS",
    "PREDICTIONS",
    "RESIDUAL_SCALE",
    "SAMPLERS",
    "SCHEDULES",
    "SIZES",
    "TARGETS",
    "TIMESTEP_RULES",
    "TIME_WEIGHTINGS",
    "CVAEConfig",
    "Config",
    "DataConfig",
    "DegradationConfig",
    "DiffusionConfig",
    "EncoderConfig",
    "GANConfig",
    "GlowConfig",
    "LossConfig",
    "ModelConfig",
    "TrainConfig",
    "UNetConfig",
    "apply_overrides",
    "build_preset",
    "check_choice",
    "check_data",
    "config_from_dict",
    "describe_presets",
    "hr_size_multiple",
    "inert_keys",
    "load_config_file",
    "merge",
    "validate",
]
