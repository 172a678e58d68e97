"""The package's import layering: no module imports one from a layer above its own.

    base (errors, config, rng, precision, weights, checkpoint, pretrained)
      -> data (incl. layouts) -> models -> diffusion, metrics -> inference, realesrgan -> training
      -> evaluation, reports, web -> commands, cli, __main__

Lazy imports inside functions count too: they are still a dependency. The one exception is
the package top, `lddpm/__init__.py`: it re-exports the public names of every layer
(`from lddpm import Upscaler`) and imports none of them until asked (tests/test_api.py checks
that `import lddpm` loads no other module), so no module that imports it depends on them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lddpm

PACKAGE = Path(lddpm.__file__).parent

LAYERS = [
    ("__init__", "errors", "config", "rng", "precision", "extras", "weights",
     "checkpoint", "pretrained"),
    ("data",),
    ("models", "weights_ncnn"),
    ("diffusion", "metrics"),
    ("inference", "realesrgan", "peers"),
    ("training",),
    ("evaluation", "reports", "web"),
    ("commands", "cli", "__main__"),
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _layer(module: str) -> int:
    """'lddpm.models.unet' -> the layer of 'models'."""
    return LAYER[module.split(".")[1] if "." in module else "__init__"]


def _imports(path: Path) -> set[str]:
    """Every lddpm module a source file imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lddpm"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lddpm"))
    return found


def test_no_module_imports_from_a_higher_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(("lddpm", *path.relative_to(PACKAGE).with_suffix("").parts))
        if name == "lddpm.__init__":
            continue  # the public facade, lazy only (see above)
        for imported in _imports(path):
            if _layer(imported) > _layer(name):
                upward.append(f"{name} -> {imported}")
    assert not upward, upward


def test_inference_needs_neither_training_nor_the_losses():
    bad = {"lddpm.training", "lddpm.diffusion.objective", "lddpm.models.perceptual"}
    imported = _imports(PACKAGE / "inference.py")
    assert not {m for m in imported if m.startswith(tuple(bad))}
