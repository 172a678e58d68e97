"""`lddpm models`: the models shipped in the package (what `lddpm upscale` uses by default)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    from lddpm.pretrained import describe, shipped_models

    models = shipped_models()
    if not models:
        print("no model is shipped in this install; train one with `lddpm train` "
              "and pass --checkpoint")
        return 0
    for name in models:
        d = describe(name)
        tag = " (default)" if d["default"] else ""
        print(f"{name}{tag}: x{d['scale']}, preset {d['preset']}, {d['trained_steps']} training "
              f"steps; sampling defaults {d['inference']}")
        if d["description"]:
            print(f"    {d['description']}")
    return 0
