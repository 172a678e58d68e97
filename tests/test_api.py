"""The package top: `from lddpm import Upscaler` and the few other public names, imported lazily
so that `import lddpm` (and with it `lddpm --version`, the CLI's start) stays cheap."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lddpm

PUBLIC = ["Upscaler", "shipped_models", "Config", "build_preset", "UserError", "__version__"]


def test_import_lddpm_imports_neither_torch_nor_any_lddpm_module():
    """In a fresh interpreter: only the package top is loaded, and no torch."""
    code = ("import json, sys, lddpm; "
            "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' "
            "or m.startswith(('torch.', 'numpy', 'PIL', 'lddpm')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert json.loads(out) == ["lddpm"]


def test_the_public_names_are_the_library_objects():
    from lddpm import Config, Upscaler, UserError, build_preset, shipped_models
    from lddpm.config import Config as config_Config
    from lddpm.config import build_preset as config_build_preset
    from lddpm.errors import UserError as errors_UserError
    from lddpm.inference import Upscaler as inference_Upscaler
    from lddpm.pretrained import shipped_models as pretrained_shipped_models

    assert Upscaler is inference_Upscaler and Config is config_Config
    assert build_preset is config_build_preset and UserError is errors_UserError
    assert shipped_models is pretrained_shipped_models
    assert sorted(lddpm.__all__) == sorted(PUBLIC) == sorted([*lddpm._LAZY, "__version__"])
    assert set(PUBLIC) <= set(dir(lddpm))
    assert isinstance(build_preset("tiny"), Config)


def test_an_unknown_name_is_an_attribute_error_and_submodules_still_import():
    with pytest.raises(AttributeError, match="no attribute 'Upscalr'"):
        lddpm.Upscalr  # noqa: B018
    with pytest.raises(ImportError):
        from lddpm import Upscalr  # noqa: F401
    from lddpm import checkpoint  # a submodule, not a lazy name: imported as before

    assert checkpoint.__name__ == "lddpm.checkpoint"


def test_no_library_module_imports_a_lazy_name_from_the_package_top():
    """`from lddpm import Upscaler` inside the library would make `lddpm.checkpoint` (say)
    depend on inference through the facade, a cycle the layering test cannot see."""
    package = Path(lddpm.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == package:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "lddpm":
                found += [f"{path.name}: {a.name}" for a in node.names if a.name in lddpm._LAZY]
    assert not found, found
