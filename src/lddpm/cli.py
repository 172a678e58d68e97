"""`lddpm` command line: train | upscale | evaluate | degrade | presets | models | export | serve.

Exit codes: 0 success, 2 bad input or usage (one line, no traceback), 1 internal error.
Each subcommand lives in `lddpm.commands.<name>` with `add_arguments(parser)` and `run(args)`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lddpm import __version__
from lddpm.errors import UserError

# name -> one-line help. A plain dict: the error for an unknown command lists these.
COMMANDS: dict[str, str] = {
    "train": "train a model on a folder of photos (resumable)",
    "upscale": "super-resolve images (the shipped x4 model by default)",
    "evaluate": "PSNR/SSIM/LR-PSNR (and more) of a checkpoint on a dataset",
    "degrade": "make an LR set from HR images (bicubic or BSRGAN degradations)",
    "presets": "list the named presets with parameter counts",
    "models": "list the models shipped in the package",
    "export": "write an inference-only copy of a checkpoint (bf16 weights, sampling defaults)",
    "serve": "a web page to try a model: upload, compare, download (needs lddpm[web])",
}


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 already; make its message a single `lddpm: error:` line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lddpm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lddpm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"lddpm.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        args = build_parser().parse_args(argv)
        if not args.command:
            build_parser().print_help()
            return 2
        if getattr(args, "device", None) is not None:  # train, upscale, evaluate, serve
            from lddpm.precision import resolve_device

            resolve_device(args.device)
        module = importlib.import_module(f"lddpm.commands.{args.command}")
        return int(module.run(args) or 0)
    except UserError as exc:
        from lddpm.commands.sampling import with_flag

        # the library names the choice at fault (exc.option); the flag is the CLI's to add
        print(f"lddpm: error: {with_flag(str(exc), exc.option, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lddpm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
