"""The one worker thread behind `lddpm serve`: upscales run one at a time, in arrival order.

A request becomes a `Job`. `Worker.submit` queues it on a single-thread executor, so two
requests never run the network at once (they would only slow each other down and double the
memory) and none is dropped. The job's events (loading, started, progress, done or error)
reach the request's handler through `job.notify`. A job names its model: the worker takes it
from the `ModelCatalog`, loading it first when it is not among the ones kept (a `loading`
event), so models are loaded on this thread too, never while another request samples. A
client that goes away sets `job.cancel`: a job still queued is skipped, a running one stops
at its next network evaluation, so the worker is free for the next request at once.

The queue is bounded by places (`Worker.reserve`): a request takes one before its upload is
read and keeps it until its job leaves the queue, so a burst of uploads never holds more
decoded images than there are places.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lddpm.data.imageio import save_image
from lddpm.data.resize import imresize
from lddpm.errors import UserError
from lddpm.inference import SamplingChoices
from lddpm.web.models import ModelCatalog

log = logging.getLogger("lddpm.web")


class JobCancelled(Exception):
    """Raised inside the worker thread when the job's client has gone away."""


@dataclass(frozen=True)
class Params:
    """A request's sampling: its model (a catalog name), its choices (checked against that
    model's config; the worker plans them on the loaded model) and seed."""

    model: str
    choices: SamplingChoices
    seed: int = 0


@dataclass(eq=False)  # jobs are compared by identity (in the pending list), not by tensor
class Job:
    lr: torch.Tensor  # (1, 3, h, w) in [0, 1]
    params: Params
    notify: Callable[[dict], None]  # called from the worker thread; must be thread-safe
    name: str = "image"  # the upload's file name, for logs and the download name
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    cancel: threading.Event = field(default_factory=threading.Event)
    started: bool = False


class Slot:
    """One place in the worker's queue, taken by `Worker.reserve` before an upload is read.

    A job takes it over (`Worker.submit(job, slot)`: the place is then the job's until it
    leaves the queue), or `release` gives it back. `release` after either is a no-op, so a
    request handler's `finally: slot.release()` frees the place on every failure path.
    """

    def __init__(self, worker: Worker):
        self._worker = worker
        self.held = True  # guarded by the worker's lock

    def release(self) -> None:
        self._worker._give_back(self)


class Worker:
    """Runs jobs on one thread with the catalog's models; writes result PNGs under
    `results_dir/<job id>/`."""

    def __init__(self, models: ModelCatalog, results_dir: Path, keep: int = 16):
        self.models = models
        self.results_dir = results_dir
        self.keep = keep  # result folders kept for download; older ones are deleted
        self.counts: Counter[str] = Counter()  # done / error / cancelled, for logs and tests
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lddpm-worker")
        self._lock = threading.Lock()
        self._pending: list[Job] = []  # submitted and not finished, the running one first
        self._reserved = 0  # places taken by requests whose upload is still being read
        self._kept: deque[Path] = deque()

    # ------------------------------------------------------------------ queue
    def reserve(self, places: int) -> Slot | None:
        """Takes one of `places` places (held by jobs waiting or running, and by requests
        still uploading), or None when all are taken. Checking and taking are one step under
        the lock, so simultaneous requests cannot all see the same free place."""
        with self._lock:
            if len(self._pending) + self._reserved >= places:
                return None
            self._reserved += 1
        return Slot(self)

    def _give_back(self, slot: Slot) -> None:
        with self._lock:
            if slot.held:
                slot.held = False
                self._reserved -= 1

    def submit(self, job: Job, slot: Slot | None = None) -> Future:
        """Queues `job`; with `slot`, the job takes over that reserved place."""
        with self._lock:
            if slot is not None:
                if not slot.held:
                    raise ValueError("this queue place was already used or given back")
                slot.held = False
                self._reserved -= 1
            self._pending.append(job)
        return self._executor.submit(self._run, job)

    def position(self, job: Job) -> int:
        """How many jobs are ahead of `job` (0: it runs now or next)."""
        with self._lock:
            return self._pending.index(job) if job in self._pending else 0

    def waiting(self) -> int:
        """Places taken: jobs waiting or running, and requests still uploading."""
        with self._lock:
            return len(self._pending) + self._reserved

    def close(self) -> None:
        """Cancels every job and waits for the running one to stop (at its next step)."""
        with self._lock:
            for job in self._pending:
                job.cancel.set()
        self._executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------------ running
    def _run(self, job: Job) -> None:
        event = self._attempt(job)
        # The job leaves the queue before its client hears the outcome, so a client that
        # sends its next request at once finds the worker free.
        with self._lock:
            self._pending.remove(job)
            self.counts[event["event"] if event else "cancelled"] += 1
        if event:
            job.notify(event)

    def _attempt(self, job: Job) -> dict | None:
        """The job's final event (done or error); None when it was cancelled."""
        try:
            if job.cancel.is_set():
                raise JobCancelled  # its client left while it waited: skip it
            job.started = True
            return {"event": "done", **self._upscale(job)}
        except JobCancelled:
            log.info("%s: cancelled (client disconnected)", job.name)
        except UserError as exc:
            return {"event": "error", "message": str(exc)}
        except Exception as exc:
            log.exception("%s: internal error", job.name)
            return {"event": "error", "message": f"internal error: {type(exc).__name__}: {exc}"}
        return None

    def _upscale(self, job: Job) -> dict:
        p = job.params
        if not self.models.is_loaded(p.model):
            job.notify({"event": "loading", "model": p.model})
            log.info("%s: loading the model %s", job.name, p.model)
        up = self.models.get(p.model)
        if job.cancel.is_set():
            raise JobCancelled  # its client left while the model loaded
        plan = up.plan(p.choices)
        h, w = job.lr.shape[-2:]
        total = plan.evaluations(h, w)  # what `progress` will count: the bar ends at 100%
        job.notify({"event": "started", "total": total})
        done = 0

        def progress(_n: int = 1) -> None:
            nonlocal done
            if job.cancel.is_set():
                raise JobCancelled
            done += 1
            job.notify({"event": "progress", "done": done, "total": total})

        before, start = up.evaluations, time.perf_counter()
        sr = up.upscale(job.lr, seed=p.seed, plan=plan, progress=progress)
        seconds = time.perf_counter() - start
        result = {
            "id": job.id,
            "name": job.name,
            "model": p.model,
            "lr_size": [w, h],
            "size": [w * up.scale, h * up.scale],
            "scale": up.scale,
            "sampler": plan.sampler,
            "steps": plan.steps,
            "seed": p.seed,
            "seconds": round(seconds, 3),
            "evaluations": up.evaluations - before,
            **self._save(job, sr, up.scale),
        }
        log.info("%s: %dx%d -> %dx%d, %s, %s %d steps, %d sample(s), %.1f s", job.name, w, h,
                 *result["size"], p.model, plan.sampler, plan.steps, plan.num_samples, seconds)
        return result

    def _save(self, job: Job, sr: torch.Tensor, scale: int) -> dict:
        """Writes bicubic.png and sample_K.png; returns their URLs (relative to the page)."""
        folder = self.results_dir / job.id
        # the bicubic upsampling the project's metrics and models use: the slider's "before"
        bicubic = imresize(job.lr[0], scale=scale).clamp(0, 1)
        save_image(folder / "bicubic.png", bicubic)
        samples = []
        for k in range(sr.shape[0]):
            save_image(folder / f"sample_{k}.png", sr[k, 0])
            samples.append(f"results/{job.id}/sample_{k}.png")
        self._prune(folder)
        return {"bicubic": f"results/{job.id}/bicubic.png", "samples": samples}

    def _prune(self, newest: Path) -> None:
        """Keeps the last `keep` results on disk, so a long-running server's folder stays small."""
        self._kept.append(newest)
        while len(self._kept) > self.keep:
            shutil.rmtree(self._kept.popleft(), ignore_errors=True)
