"""`lddpm serve`: a web page to try the models (needs the web extra: pip install 'lddpm[web]').

The page offers every shipped model, and the --checkpoint one when given (then the default
selection); each is loaded the first time a request uses it.
"""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path

from lddpm.commands import sampling
from lddpm.errors import UserError, display_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint",
                        help="checkpoint, run or export directory, or a shipped model name: the "
                             "page's default model (default: the default shipped model); the "
                             "page offers the shipped models too")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; "
                             "0.0.0.0 opens the page to the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860; 0 = any free one)")
    parser.add_argument("--max-upload-mb", type=float, default=20.0,
                        help="larger uploads are refused before they are read (default 20)")
    parser.add_argument("--max-pixels", type=int, default=1024 * 1024,
                        help="largest input image, in LR pixels (default 1048576 = 1024x1024)")
    parser.add_argument("--max-samples", type=int, default=4,
                        help="most samples one request may ask for (default 4)")
    # the server's sampling choices; the page may pick another sampler and step count, and
    # sends its own seed and number of samples. --sampler, --steps and --consistency are the
    # default model's; the other models keep their own and take the rest (--eta, --tile, ...)
    sampling.add_arguments(parser, samples=False, purpose="the default model's default")


def _check_args(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be in 0..65535, got {args.port}")
    if args.max_upload_mb <= 0 or args.max_pixels < 1 or args.max_samples < 1:
        raise UserError("--max-upload-mb, --max-pixels and --max-samples must be positive")


def _listen(host: str, port: int) -> socket.socket:
    """Binds before the server starts, so a taken port is one error line, and port 0 works."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _model_name(checkpoint: str | None) -> str:
    from lddpm.pretrained import DEFAULT_MODEL, shipped_models

    if checkpoint is None or checkpoint in shipped_models():
        return checkpoint or DEFAULT_MODEL
    shown = display_path(checkpoint)
    # the page's title: a chain of ../ says nothing, the directory's own name does
    return Path(checkpoint).resolve().name if shown.startswith("..") else shown


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    try:
        import uvicorn

        from lddpm.web.app import Limits, create_app
        from lddpm.web.models import ModelCatalog
    except ImportError as exc:
        raise UserError(f"lddpm serve needs the web extra ({exc.name} is missing): "
                        "pip install 'lddpm[web]'") from None
    choices = sampling.choices(args)
    models = ModelCatalog.for_server(args.checkpoint, _model_name(args.checkpoint), choices,
                                     load=lambda entry: sampling.load(args, entry.path))
    # the default model is loaded now: a bad checkpoint or choice is one error line before
    # the server starts (the others' choices are checked against their configs)
    up = models.get(models.default)
    up.plan(choices)
    for entry in models.entries.values():
        try:
            entry.plan()
        except UserError as exc:
            raise UserError(f"{entry.name}: {exc}", option=exc.option) from None
    limits = Limits(int(args.max_upload_mb * 2**20), args.max_pixels, args.max_samples)
    name = models.default
    others = [n for n in models.entries if n != name]
    also = f"; also {', '.join(others)}" if others else ""
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    logging.basicConfig(level=logging.INFO, format="lddpm serve: %(message)s")
    print(f"lddpm serve: {name} (x{up.scale}{also}) at http://{url_host}:{port}/  (Ctrl-C stops)",
          flush=True)
    config = uvicorn.Config(create_app(models, limits), log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises Ctrl-C after its clean shutdown; here it is the normal end
    print("lddpm serve: stopped", flush=True)
    return 0
