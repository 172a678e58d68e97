"""The package's import layering: no module imports one from a layer above its own.

    base (errors, config, rng, precision, weights, checkpoint, pretrained)
      -> data (incl. layouts) -> models -> diffusion, metrics -> inference, realesrgan, losses
      -> training -> evaluation, reports, web -> commands, cli, __main__

`losses` (perceptual, adversarial + R1, KL, the objective) sits above the networks and the
diffusion it combines, beside `inference`, which needs none of it (checked below).

Lazy imports inside functions count too: they are still a dependency. The one exception is
the package top, `lddpm/__init__.py`: it re-exports the public names of every layer
(`from lddpm import Upscaler`) and imports none of them until asked (tests/test_api.py checks
that `import lddpm` loads no other module), so no module that imports it depends on them.
The old import paths of moved modules (`ALIASES`) re-export their new home and hold nothing
else (checked below), so they are not dependencies either.
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
    ("inference", "realesrgan", "peers", "losses"),
    ("training",),
    ("evaluation", "reports", "web"),
    ("commands", "cli", "__main__"),
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
# old module path -> the module it moved to (kept importable for scripts of users)
ALIASES = {
    "lddpm.models.perceptual": "lddpm.losses.perceptual",
    "lddpm.diffusion.objective": "lddpm.losses.objective",
}


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
        if name == "lddpm.__init__" or name in ALIASES:
            continue  # the public facade, lazy only; old paths re-exporting (see above)
        for imported in _imports(path):
            if _layer(imported) > _layer(name):
                upward.append(f"{name} -> {imported}")
    assert not upward, upward


def test_inference_needs_neither_training_nor_the_losses():
    bad = {"lddpm.training", "lddpm.losses", *ALIASES}
    imported = _imports(PACKAGE / "inference.py")
    assert not {m for m in imported if m.startswith(tuple(bad))}


def test_networks_hold_no_losses():
    """Networks keep only networks: nothing under models/ imports a loss (the old path
    models/perceptual.py is an alias of losses/perceptual.py, see below)."""
    for path in sorted((PACKAGE / "models").glob("*.py")):
        name = "lddpm.models." + path.stem
        if name not in ALIASES:
            assert not {m for m in _imports(path) if m.startswith("lddpm.losses")}, name


def test_old_paths_only_re_export_their_new_home():
    for old, new in ALIASES.items():
        tree = ast.parse((PACKAGE / Path(*old.split(".")[1:])).with_suffix(".py").read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom):
                assert node.module == new, (old, node.module)
            elif isinstance(node, ast.Assign):
                assert [t.id for t in node.targets] == ["__all__"], old
            else:  # the docstring
                assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant), old
