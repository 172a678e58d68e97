"""The Starlette app of `lddpm serve`.

    GET  /                  the page (static/index.html; its JS and CSS under /static/)
    GET  /api/info          the limits, and the default model (name, scale, its samplers)
    GET  /api/models        the models offered, the default first: each one's description,
                            scale, the samplers it can run with their steps, its defaults
    POST /api/upscale       body: the image file; query: model, sampler, steps, seed, samples,
                            name. 400/413/503 + {"error": ...} for bad input (an unknown model
                            included), else a stream of JSON lines: queued, [loading,] started,
                            progress..., then done or error
    GET  /results/ID/FILE   a result PNG (bicubic.png, sample_K.png)

Uploads are streamed to a file in the server's temporary folder, counted as they arrive, and
refused (413) once over the limit, without reading the rest. Everything the server writes
lives in that folder, which is deleted when the server stops.

A request takes its place in the queue (`Limits.max_queue`) before a byte of its upload is
read, and gives it back on every failure path; so a burst of uploads gets at most max_queue
acceptances, the others a 503 at once, and at most max_queue decoded images are held.

The models (`ModelCatalog`: the shipped ones, and a --checkpoint) are listed and each
request checked from their configs; the worker loads a model the first time a request for it
runs and keeps the few used last.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lddpm.data.imageio import image_size, load_image, to_tensor
from lddpm.errors import UserError
from lddpm.web.models import ModelCatalog
from lddpm.web.worker import Job, Params, Slot, Worker

STATIC = Path(__file__).parent / "static"
HEARTBEAT_S = 1.0  # a line at least this often: queue position, and a dead client is noticed
_RESULT_FILE = re.compile(r"^[0-9a-f]{16}/(bicubic|sample_\d{1,2})\.png$")


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 1024 * 1024  # LR pixels; CPU sampling time grows with them
    max_samples: int = 4
    max_queue: int = 16  # requests uploading, waiting or running; more get 503, not a long wait


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def create_app(models: ModelCatalog, limits: Limits = Limits()) -> Starlette:
    """The app offering the catalog's `models`. Its temporary folder and worker live as long
    as the app runs (Starlette's lifespan), so a test can start and stop it in-process. Each
    model's `choices` (`lddpm serve --sampler ... --tile ...` for the default one) are those
    over which a request picks its sampler, steps, seed and samples."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        with tempfile.TemporaryDirectory(prefix="lddpm-serve-") as tmp:
            workdir = Path(tmp)
            (workdir / "uploads").mkdir()
            app.state.workdir = workdir
            app.state.worker = Worker(models, workdir / "results")
            try:
                yield
            finally:
                await run_in_threadpool(app.state.worker.close)

    app = Starlette(
        routes=[
            Route("/", lambda request: FileResponse(STATIC / "index.html")),
            Route("/api/info", lambda request: JSONResponse(server_info(models, limits))),
            Route("/api/models", lambda request: JSONResponse(models.info())),
            Route("/api/upscale", upscale, methods=["POST"]),
            Route("/results/{path:path}", result_file),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.models, app.state.limits = models, limits
    return app


def server_info(models: ModelCatalog, limits: Limits) -> dict[str, Any]:
    """The limits, and the default model's name, scale and samplers (GET /api/models has
    every model's)."""
    default = models.entry(None).info()
    return {
        "model": default["name"],
        "scale": default["scale"],
        "samplers": default["samplers"],
        "default_sampler": default["default_sampler"],
        "max_upload_bytes": limits.max_upload_bytes,
        "max_pixels": limits.max_pixels,
        "max_samples": limits.max_samples,
    }


# ---------------------------------------------------------------------- /api/upscale
async def upscale(request: Request) -> Response:
    models, limits = request.app.state.models, request.app.state.limits
    worker: Worker = request.app.state.worker
    slot: Slot | None = None
    try:
        params = parse_params(request.query_params, models, limits)
        name = _display_name(request.query_params.get("name", ""))
        # The place is taken before the upload is read: checked and taken in one step, so
        # simultaneous uploads cannot all pass the check while the queue still looks empty.
        slot = worker.reserve(limits.max_queue)
        if slot is None:
            raise HTTPError(503, f"the server is busy ({limits.max_queue} requests uploading, "
                                 "waiting or running); try again in a minute")
        lr = await receive_image(request, name, limits)
        job, events = new_job(lr, params, name)
        worker.submit(job, slot)  # the job holds the place until it leaves the queue
    except HTTPError as exc:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)
    except UserError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    finally:
        if slot is not None:
            slot.release()  # a 400/413, a client gone mid-upload, any error; no-op once submitted
    return StreamingResponse(job_events(worker, job, events),
                             media_type="application/x-ndjson",
                             headers={"Cache-Control": "no-store"})


def parse_params(query, models: ModelCatalog, limits: Limits) -> Params:
    """Query string -> Params: the request's model (none: the default; an unknown one is a
    UserError listing those offered), its choices over the server's for that model, checked
    against the model's config, and its seed; a bad value is a UserError naming the field."""
    entry = models.entry(query.get("model", "").strip() or None)
    choices = entry.choices

    def integer(key: str, default: int | None, lo: int, hi: int) -> int | None:
        raw = query.get(key, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise UserError(f"{key} must be a whole number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise UserError(f"{key} must be in {lo}..{hi}, got {value}")
        return value

    sampler = query.get("sampler", "").strip() or None
    steps = integer("steps", None, 1, entry.timesteps)
    seed = integer("seed", 0, 0, 2**31 - 1)
    samples = integer("samples", 1, 1, limits.max_samples)
    # a sampler picked on the page comes with its own steps (None: that sampler's default)
    asked = replace(choices, sampler=sampler, steps=steps) if sampler else \
        replace(choices, steps=choices.steps if steps is None else steps)
    asked = replace(asked, num_samples=samples)
    models.check(entry.name, asked)  # UserError for an invalid combination, weights not loaded
    return Params(entry.name, asked, seed)


def _display_name(raw: str) -> str:
    """The upload's base name, for messages and the download; never a path."""
    base = re.split(r"[\\/]", raw)[-1]
    base = re.sub(r"[^\w.\- ]", "_", base).strip()[:100]
    return base or "upload"


async def receive_image(request: Request, name: str, limits: Limits):
    """Streams the body into the temporary folder, then decodes it -> (1, 3, h, w) in [0, 1]."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_upload_bytes:
        raise HTTPError(413, _too_large(name, limits))  # refused before reading a byte of it
    path = request.app.state.workdir / "uploads" / secrets.token_hex(8)
    try:
        size = 0
        with path.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limits.max_upload_bytes:
                    raise HTTPError(413, _too_large(name, limits))
                handle.write(chunk)
        if size == 0:
            raise UserError("the upload is empty: choose an image file")
        return await run_in_threadpool(_decode, path, name, limits.max_pixels)
    finally:
        path.unlink(missing_ok=True)


def _too_large(name: str, limits: Limits) -> str:
    return f"{name}: the file is over this server's upload limit of {limits.max_upload_bytes / 2**20:g} MB"


def _decode(path: Path, name: str, max_pixels: int):
    """Decodes with the project's loader; messages name the upload, not the temporary file."""
    try:
        h, w = image_size(path)  # header only: a huge image is refused before decoding
        if h * w > max_pixels:
            raise UserError(f"{path}: {w}x{h} = {w * h} pixels is over this server's limit of "
                            f"{max_pixels} pixels (lddpm serve --max-pixels); use a smaller image")
        return to_tensor(load_image(path, max_pixels=max_pixels))[None]
    except UserError as exc:
        raise UserError(str(exc).replace(str(path), name)) from None


def new_job(lr, params: Params, name: str) -> tuple[Job, asyncio.Queue]:
    """A job whose events (sent from the worker thread) arrive on an asyncio queue of the
    running event loop."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[dict] = asyncio.Queue()
    job = Job(lr, params, lambda event: loop.call_soon_threadsafe(events.put_nowait, event), name)
    return job, events


async def job_events(worker: Worker, job: Job, events: asyncio.Queue):
    """Yields the queued job's events as JSON lines until done or error. Leaving this
    generator early (the client disconnected: Starlette cancels it, or the write fails)
    cancels the job, which frees the worker. (Should the client leave before the stream
    starts, the job runs unobserved and still leaves the queue when it ends.)"""
    try:
        event = {"event": "queued", "position": worker.position(job)}
        while True:
            yield json.dumps(event) + "\n"
            if event["event"] in ("done", "error"):
                return
            try:
                event = await asyncio.wait_for(events.get(), HEARTBEAT_S)
            except asyncio.TimeoutError:
                event = ({"event": "heartbeat"} if job.started
                         else {"event": "queued", "position": worker.position(job)})
    finally:
        job.cancel.set()  # a no-op once the job is finished


# ---------------------------------------------------------------------- /results
async def result_file(request: Request) -> Response:
    rel = request.path_params["path"]
    path = request.app.state.workdir / "results" / rel
    if not _RESULT_FILE.match(rel) or not path.is_file():
        keep = request.app.state.worker.keep
        return JSONResponse({"error": f"no such result (kept for the last {keep} requests)"},
                            status_code=404)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-store"})
