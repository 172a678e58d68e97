"""The Starlette app of `lddpm serve`.

    GET  /                  the page (static/index.html; its JS and CSS under /static/)
    GET  /api/info          the model (name, scale), the samplers it supports, the limits
    POST /api/upscale       body: the image file; query: sampler, steps, seed, samples, name.
                            400/413/503 + {"error": ...} for bad input, else a stream of JSON
                            lines: queued, started, progress..., then done or error
    GET  /results/ID/FILE   a result PNG (bicubic.png, sample_K.png)

Uploads are streamed to a file in the server's temporary folder, counted as they arrive, and
refused (413) once over the limit, without reading the rest. Everything the server writes
lives in that folder, which is deleted when the server stops.

A request takes its place in the queue (`Limits.max_queue`) before a byte of its upload is
read, and gives it back on every failure path; so a burst of uploads gets at most max_queue
acceptances, the others a 503 at once, and at most max_queue decoded images are held.
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

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lddpm.data.imageio import image_size, load_image, to_tensor
from lddpm.diffusion.samplers import SAMPLERS
from lddpm.errors import UserError
from lddpm.inference import SamplingChoices, Upscaler
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


def create_app(up: Upscaler, model_name: str, limits: Limits = Limits(),
               choices: SamplingChoices | None = None) -> Starlette:
    """The app for one loaded model. Its temporary folder and worker live as long as the app
    runs (Starlette's lifespan), so a test can start and stop it in-process. `choices`: the
    server's sampling choices (`lddpm serve --sampler ... --tile ...`), over which a request
    picks its sampler, steps, seed and samples."""
    choices = choices or SamplingChoices()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        with tempfile.TemporaryDirectory(prefix="lddpm-serve-") as tmp:
            workdir = Path(tmp)
            (workdir / "uploads").mkdir()
            app.state.workdir = workdir
            app.state.worker = Worker(up, workdir / "results")
            try:
                yield
            finally:
                await run_in_threadpool(app.state.worker.close)

    app = Starlette(
        routes=[
            Route("/", lambda request: FileResponse(STATIC / "index.html")),
            Route("/api/info", lambda request: JSONResponse(model_info(up, model_name, limits, choices))),
            Route("/api/upscale", upscale, methods=["POST"]),
            Route("/results/{path:path}", result_file),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        lifespan=lifespan,
    )
    app.state.up, app.state.limits, app.state.choices = up, limits, choices
    return app


def model_info(up: Upscaler, model_name: str, limits: Limits,
               choices: SamplingChoices | None = None) -> dict:
    """What the page needs to offer only valid choices (each sampler's steps as its plan
    would run them; the default sampler's as the server's plan runs it)."""
    choices = choices or SamplingChoices()
    samplers = {}
    for name in sorted(SAMPLERS, key=lambda n: n == "ddpm"):  # the menu: all-T-step ddpm last
        try:
            default_steps = up.plan(replace(choices, sampler=name, steps=None)).steps
        except UserError:
            continue  # e.g. lddpm without a GAN-trained checkpoint
        # ddpm and lddpm run a fixed number of steps; ddim takes any count up to T
        fixed = name != "ddim"
        samplers[name] = {"default_steps": default_steps, "min_steps": default_steps if fixed else 1,
                          "max_steps": default_steps if fixed else up.sched.timesteps}
    default = up.plan(choices)
    default_sampler = default.sampler
    if default_sampler in samplers:
        samplers[default_sampler]["default_steps"] = default.steps
    return {
        "model": model_name,
        "scale": up.scale,
        "samplers": samplers,
        "default_sampler": default_sampler,
        "max_upload_bytes": limits.max_upload_bytes,
        "max_pixels": limits.max_pixels,
        "max_samples": limits.max_samples,
    }


# ---------------------------------------------------------------------- /api/upscale
async def upscale(request: Request) -> Response:
    up, limits = request.app.state.up, request.app.state.limits
    worker: Worker = request.app.state.worker
    slot: Slot | None = None
    try:
        params = parse_params(request.query_params, up, limits, request.app.state.choices)
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


def parse_params(query, up: Upscaler, limits: Limits,
                 choices: SamplingChoices | None = None) -> Params:
    """Query string -> Params (the request's plan over the server's `choices`, and its
    seed); a bad value is a UserError naming the field."""
    choices = choices or SamplingChoices()
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
    steps = integer("steps", None, 1, up.sched.timesteps)
    seed = integer("seed", 0, 0, 2**31 - 1)
    samples = integer("samples", 1, 1, limits.max_samples)
    # a sampler picked on the page comes with its own steps (None: that sampler's default)
    asked = replace(choices, sampler=sampler, steps=steps) if sampler else \
        replace(choices, steps=choices.steps if steps is None else steps)
    plan = up.plan(replace(asked, num_samples=samples))  # UserError for an invalid combination
    return Params(plan, seed)


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
