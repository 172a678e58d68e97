"""lddpm: few-step conditional diffusion for single-image super-resolution.

The names a user needs, importable from the package top:

    from lddpm import Upscaler
    up = Upscaler.from_pretrained()          # the shipped model (lddpm.shipped_models() lists them)
    out = up(Image.open("photo.png"))        # PIL in, PIL out

    Upscaler         lddpm.inference       load a model (shipped, checkpoint, export) and upscale
    shipped_models   lddpm.pretrained      name -> directory of the models shipped in the package
    Config           lddpm.config          the full configuration (dataclasses)
    build_preset     lddpm.config          "small+v3" -> Config
    UserError        lddpm.errors          what the library raises for bad input

They are imported on first use (PEP 562 module __getattr__), so `import lddpm` stays cheap:
it imports neither torch nor any lddpm module (tests/test_api.py checks both).
"""

__version__ = "0.1.0"

# name -> the module that defines it; imported when the name is first asked for
_LAZY = {
    "Upscaler": "lddpm.inference",
    "shipped_models": "lddpm.pretrained",
    "Config": "lddpm.config",
    "build_preset": "lddpm.config",
    "UserError": "lddpm.errors",
}

# written out (not built from _LAZY) so that linters and type checkers can read it
__all__ = ["Config", "Upscaler", "UserError", "__version__", "build_preset", "shipped_models"]

# `typing.TYPE_CHECKING` without importing typing (8 ms): type checkers treat this name as
# True, so they and IDEs see the real imports below; at run time the block never executes.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from lddpm.config import Config, build_preset
    from lddpm.errors import UserError
    from lddpm.inference import Upscaler
    from lddpm.pretrained import shipped_models
del TYPE_CHECKING


def __getattr__(name: str):
    if name not in _LAZY:
        # also how `from lddpm import checkpoint` falls through to importing the submodule
        raise AttributeError(f"module 'lddpm' has no attribute {name!r}")
    value = getattr(__import__(_LAZY[name], fromlist=[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
