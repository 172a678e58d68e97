"""`lddpm serve` at the HTTP level: a real uvicorn server on 127.0.0.1, driven by http.client.

Upload -> streamed progress -> result PNGs; bad input gets a clear 400/413 and the server
keeps serving; two requests at once are queued, not lost; a client that disconnects frees
the worker; nothing is written outside the server's temporary folder, which is removed at
shutdown. The model is the session's tiny x2 checkpoint (meaningless weights, real plumbing);
the several-model tests ship tiny exports of it (and of the gan run) as the shipped models.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import sys
import threading
import time
from urllib.parse import urlencode

import numpy as np
import pytest
from conftest import SCALE, smooth_pattern
from PIL import Image

from lddpm import pretrained
from lddpm.cli import main

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[web]'")
uvicorn = pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install -e '.[web]'")

from lddpm.inference import SamplingChoices, Upscaler
from lddpm.web.app import Limits, create_app
from lddpm.web.models import ModelCatalog, ModelEntry

LIMITS = Limits(max_upload_bytes=64 * 1024, max_pixels=10_000, max_samples=4)
TIMEOUT = 120  # seconds for any one HTTP read: generous for a loaded 2-core machine


@contextlib.contextmanager
def running(app):
    """Serves `app` on a free 127.0.0.1 port in a thread; yields the port; stops it."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(600):  # bounded: at most 30 s for the server to start
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the test server did not start"
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=60)


@pytest.fixture(scope="module")
def up(tiny_run):
    return Upscaler.from_checkpoint(tiny_run)


@pytest.fixture(scope="module")
def one_model(tiny_run, up):
    """A catalog of the one loaded tiny checkpoint, named tiny-test; `choices`: the server's."""
    def catalog(choices: SamplingChoices | None = None) -> ModelCatalog:
        entry = ModelEntry.read("tiny-test", tiny_run, source="checkpoint", choices=choices)
        return ModelCatalog([entry], loaded={"tiny-test": up})
    return catalog


@pytest.fixture(scope="module")
def server(one_model):
    app = create_app(one_model(), LIMITS)
    with running(app) as port:
        yield app, port


def png_bytes(height: int, width: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(smooth_pattern(np.random.default_rng(seed), height, width)).save(buf, "PNG")
    return buf.getvalue()


def post(port: int, body: bytes, **query) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    conn.request("POST", "/api/upscale?" + urlencode(query), body=body,
                 headers={"Content-Type": "application/octet-stream"})
    return conn.getresponse()


def events(response: http.client.HTTPResponse):
    """The streamed JSON lines, until done or error (bounded by TIMEOUT per line)."""
    assert response.status == 200, response.read()
    while line := response.readline():
        event = json.loads(line)
        yield event
        if event["event"] in ("done", "error"):
            return


def final(response) -> dict:
    """The last event of a stream, skipping progress and heartbeats."""
    event = None
    for event in events(response):
        pass
    return event


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def error_of(response) -> str:
    return json.loads(response.read())["error"]


# ---------------------------------------------------------------------- the page
def test_page_static_files_and_info(server):
    _, port = server
    status, page = get(port, "/")
    assert status == 200 and b"<title>lddpm" in page
    for asset in ("/static/app.js", "/static/style.css"):
        assert get(port, asset)[0] == 200
    status, body = get(port, "/api/info")
    info = json.loads(body)
    assert info["scale"] == SCALE and info["model"] == "tiny-test"
    assert set(info["samplers"]) == {"ddim", "ddpm"}  # no lddpm: the tiny model has no GAN
    assert info["samplers"]["ddpm"]["min_steps"] == info["samplers"]["ddpm"]["max_steps"]
    assert info["max_upload_bytes"] == LIMITS.max_upload_bytes


# ---------------------------------------------------------------------- upscaling
def test_upscale_streams_progress_then_result_pngs(server, up):
    """An 80x70 LR is 2x2 tiles at the tiny model's auto tile: the progress total (what the
    page's bar counts to) must equal the evaluations the Upscaler really ran."""
    _, port = server
    before = up.evaluations
    stream = list(events(post(port, png_bytes(70, 80), sampler="ddim", steps=2, seed=3,
                              samples=2, name="dir/cat.png")))
    kinds = [e["event"] for e in stream]
    assert kinds[0] == "queued" and kinds[-1] == "done" and "started" in kinds
    total = next(e["total"] for e in stream if e["event"] == "started")
    progress = [e["done"] for e in stream if e["event"] == "progress"]
    done = stream[-1]
    assert progress == list(range(1, total + 1))
    assert done["evaluations"] == total == up.evaluations - before == 2 * 4 * 2
    assert done["size"] == [80 * SCALE, 70 * SCALE] and done["lr_size"] == [80, 70]
    assert (done["sampler"], done["steps"], done["seed"], done["name"]) == ("ddim", 2, 3, "cat.png")
    assert done["seconds"] > 0 and len(done["samples"]) == 2
    for url in [done["bicubic"], *done["samples"]]:
        status, data = get(port, "/" + url)
        assert status == 200
        assert Image.open(io.BytesIO(data)).size == (80 * SCALE, 70 * SCALE)


def test_default_sampler_and_same_seed_same_image(server):
    _, port = server
    first, second = (final(post(port, png_bytes(20, 24), steps=2, seed=5)) for _ in range(2))
    assert first["sampler"] == "ddim" and first["event"] == "done"
    images = [get(port, "/" + r["samples"][0])[1] for r in (first, second)]
    assert np.array_equal(*(np.asarray(Image.open(io.BytesIO(b))) for b in images))


# ---------------------------------------------------------------------- bad input
def truncated_png() -> bytes:
    data = png_bytes(60, 60)
    return data[: len(data) // 2]


@pytest.mark.parametrize("body, query, expected", [
    (b"hello, not an image", {}, "notes.png: not an image file"),
    (truncated_png(), {}, "notes.png: corrupt or truncated"),
    (png_bytes(100, 120), {}, "120x100 = 12000 pixels is over this server's limit"),
    (b"", {}, "the upload is empty"),
    (png_bytes(20, 20), {"steps": "many"}, "steps must be a whole number"),
    (png_bytes(20, 20), {"samples": "9"}, "samples must be in 1..4"),
    (png_bytes(20, 20), {"sampler": "lddpm"}, "needs a checkpoint trained with the gan part"),
    (png_bytes(20, 20), {"sampler": "ddpm", "steps": "10"}, "ddpm runs all"),
    (png_bytes(20, 20), {"sampler": "euler"}, "unknown sampler"),
])
def test_bad_input_is_a_clear_400_and_the_server_keeps_serving(server, body, query, expected):
    _, port = server
    response = post(port, body, name="notes.png", **query)
    assert response.status == 400
    message = error_of(response)
    assert expected in message
    assert "lddpm-serve-" not in message and "/" not in message.split(":")[0]  # no temp path
    assert final(post(port, png_bytes(16, 16), steps=1))["event"] == "done"


def test_upload_over_the_limit_is_refused_before_it_is_read(server):
    """A declared 10 MB body gets 413 at once: the server answers without waiting for it."""
    _, port = server
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    conn.putrequest("POST", "/api/upscale?name=big.png")
    conn.putheader("Content-Length", str(10 * 2**20))
    conn.endheaders()  # not one byte of the body is sent
    response = conn.getresponse()
    assert response.status == 413 and "upload limit of 0.0625 MB" in error_of(response)
    conn.close()


def test_chunked_upload_over_the_limit_is_refused_as_it_streams(server):
    _, port = server
    chunks = [b"\0" * 4096] * (LIMITS.max_upload_bytes // 4096 + 1)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    conn.request("POST", "/api/upscale?name=big.png", body=iter(chunks), encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413 and "big.png" in error_of(response)
    assert final(post(port, png_bytes(16, 16), steps=1))["event"] == "done"


def test_unknown_result_is_404_and_paths_cannot_escape(server):
    _, port = server
    for path in ("/results/0123456789abcdef/sample_0.png", "/results/../../etc/passwd",
                 "/results/%2e%2e/uploads/x"):
        assert get(port, path)[0] == 404


# ---------------------------------------------------------------------- load
def test_two_requests_at_once_are_queued_and_neither_is_lost(server):
    """B arrives while A runs: B is told it waits behind one request, and both finish."""
    app, port = server
    counts = dict(app.state.worker.counts)
    a = post(port, png_bytes(20, 24, seed=1), steps=300, name="a.png")
    a_events = events(a)
    for event in a_events:  # until A is running
        if event["event"] == "progress":
            break
    b = post(port, png_bytes(20, 24, seed=2), steps=2, name="b.png")
    b_events = events(b)
    assert next(b_events) == {"event": "queued", "position": 1}
    a_done = [e for e in a_events if e["event"] == "done"]
    b_rest = list(b_events)
    assert a_done and a_done[0]["name"] == "a.png" and a_done[0]["evaluations"] == 300
    assert b_rest[-1]["event"] == "done" and b_rest[-1]["name"] == "b.png"
    assert app.state.worker.counts["done"] == counts.get("done", 0) + 2


def test_a_client_that_disconnects_frees_the_worker(server, up):
    """A 1000-step ddpm request is dropped after its first step: the worker stops it, so
    the next request starts at once, and the dropped one adds no finished evaluations."""
    app, port = server
    cancelled = app.state.worker.counts["cancelled"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    conn.request("POST", "/api/upscale?sampler=ddpm", body=png_bytes(20, 24))
    for event in events(conn.getresponse()):
        if event["event"] == "progress":
            break
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    before = up.evaluations
    start = time.perf_counter()
    done = final(post(port, png_bytes(16, 16), steps=2))
    assert done["event"] == "done" and done["evaluations"] == 2
    assert up.evaluations - before == 2  # the ddpm run stopped mid-tile
    assert app.state.worker.counts["cancelled"] == cancelled + 1
    assert time.perf_counter() - start < 60


def test_a_full_queue_answers_503_at_once(one_model):
    app = create_app(one_model(), Limits(max_queue=1))
    with running(app) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        conn.request("POST", "/api/upscale?sampler=ddpm", body=png_bytes(20, 24))
        next(events(conn.getresponse()))  # queued: the one place is taken
        response = post(port, png_bytes(16, 16))
        assert response.status == 503 and "busy" in error_of(response)
        conn.close()  # frees the worker, so the server stops at once


def _upload_in_a_burst(port: int, body: bytes, ready: threading.Barrier, results: list) -> None:
    """One client of a burst: sends the headers and all but the last byte of the upload,
    waits until every client has got that far (so all the uploads are in progress at once),
    then sends the last byte and records the response: ("accepted", connection) or (status,
    error message)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.putrequest("POST", "/api/upscale?steps=1&name=burst.png")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body[:-1])
        ready.wait(timeout=TIMEOUT)
        with contextlib.suppress(OSError):  # a refused upload may already be answered
            conn.send(body[-1:])
        response = conn.getresponse()
        if response.status == 200:
            results.append(("accepted", conn, next(events(response))))
        else:
            results.append((response.status, error_of(response)))
            conn.close()
    except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in a thread
        results.append(("failed", repr(exc)))
        conn.close()


def test_a_burst_of_uploads_gets_exactly_max_queue_places(one_model):
    """8 uploads at once against max_queue=3: each request takes its place before its upload
    is read, so exactly 3 are accepted and 5 get 503, however the uploads interleave. The
    worker is held (a task on its one thread) until the burst is over, so no accepted job
    can finish and free its place early. Afterwards the places are free again and the server
    upscales as before."""
    clients, places = 8, 3
    app = create_app(one_model(), Limits(max_queue=places))
    with running(app) as port:
        worker = app.state.worker
        gate = threading.Event()
        worker._executor.submit(gate.wait, TIMEOUT)  # holds the worker thread; bounded
        ready = threading.Barrier(clients)
        results: list = []
        threads = [threading.Thread(target=_upload_in_a_burst, daemon=True,
                                    args=(port, png_bytes(16, 16, seed=i), ready, results))
                   for i in range(clients)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=TIMEOUT)
            assert not any(t.is_alive() for t in threads), "a client of the burst hung"
            accepted = [r for r in results if r[0] == "accepted"]
            refused = [r for r in results if r[0] != "accepted"]
            assert len(accepted) == places, results
            assert all(first["event"] == "queued" for _, _, first in accepted)
            assert len(refused) == clients - places
            assert all(status == 503 and "busy" in message for status, message in refused), refused
            assert worker.waiting() == places
        finally:
            for r in results:
                if r[0] == "accepted":
                    r[1].close()  # the client leaves: its job is skipped
            gate.set()
        for _ in range(TIMEOUT * 10):  # bounded: the three jobs are skipped (or run: 1 step)
            if worker.waiting() == 0:
                break
            time.sleep(0.1)
        assert worker.waiting() == 0  # every place came back
        done = final(post(port, png_bytes(16, 16), steps=1))  # the server is alive
        assert done["event"] == "done"


def test_failed_uploads_give_their_place_back(one_model):
    """With one place: a refused, an empty, a non-image and an abandoned upload each give the
    place back, so the next good upload is accepted."""
    app = create_app(one_model(), Limits(max_queue=1, max_upload_bytes=64 * 1024))
    with running(app) as port:
        worker = app.state.worker
        for body in (b"", b"not an image", png_bytes(8, 8)[:40]):
            response = post(port, body, name="bad.png")
            assert response.status == 400, error_of(response)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        conn.putrequest("POST", "/api/upscale?name=big.png")
        conn.putheader("Content-Length", str(10 * 2**20))
        conn.endheaders()
        assert conn.getresponse().status == 413
        conn.close()
        # a client that leaves mid-upload: the server notices, and the place comes back
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        conn.putrequest("POST", "/api/upscale?name=gone.png")
        conn.putheader("Content-Length", "1000")
        conn.endheaders(b"\x89PNG")
        for _ in range(100):  # bounded: at most 10 s for the server to take the place
            if worker.waiting() == 1:
                break
            time.sleep(0.1)
        assert worker.waiting() == 1
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        for _ in range(100):  # bounded: at most 10 s for the server to notice
            if worker.waiting() == 0:
                break
            time.sleep(0.1)
        assert worker.waiting() == 0
        assert final(post(port, png_bytes(16, 16), steps=1))["event"] == "done"


# ---------------------------------------------------------------------- files
def test_nothing_is_written_outside_a_temp_folder_that_is_removed(one_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = create_app(one_model(), LIMITS)
    with running(app) as port:
        done = final(post(port, png_bytes(16, 16), steps=1))
        workdir = app.state.workdir
        assert (workdir / "results" / done["id"] / "sample_0.png").is_file()
        assert not any((workdir / "uploads").iterdir())  # the upload is deleted once decoded
    assert not workdir.exists()
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------- the command
def test_serve_command_errors_are_one_line(tiny_run, capsys):
    assert main(["serve", "--checkpoint", "no/such/run"]) == 2
    assert main(["serve", "--checkpoint", str(tiny_run), "--port", "70000"]) == 2
    taken = socket.create_server(("127.0.0.1", 0))
    with taken:
        port = str(taken.getsockname()[1])
        assert main(["serve", "--checkpoint", str(tiny_run), "--port", port]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("lddpm: error: ") for line in lines)
    assert "no/such/run" in lines[0] and "--port" in lines[1] and "cannot listen" in lines[2]


def test_serve_without_the_web_extra_says_how_to_install_it(tiny_run, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if uvicorn were not installed
    assert main(["serve", "--checkpoint", str(tiny_run)]) == 2
    assert "pip install 'lddpm[web]'" in capsys.readouterr().err


def test_requests_are_planned_over_the_servers_sampling_choices(one_model, up):
    """`lddpm serve --steps 3 --consistency end --tile 8`: the page's defaults and each
    request's plan start from the server's choices; a sampler picked on the page brings its
    own step count; the progress total is the plan's count."""
    from lddpm.web.app import parse_params, server_info

    choices = SamplingChoices(steps=3, consistency="end", tile=8)
    models = one_model(choices)
    info = server_info(models, LIMITS)
    assert info["samplers"][info["default_sampler"]]["default_steps"] == 3
    params = parse_params({"seed": "5", "samples": "2"}, models, LIMITS)
    plan = up.plan(params.choices)  # what the worker runs
    assert (plan.steps, plan.consistency, plan.tile, plan.num_samples, params.seed) == (3, "end", 8, 2, 5)
    assert plan.evaluations(20, 20) == 2 * 9 * 3  # 2 samples x 3 x 3 tiles of 8 (overlap 2) x 3 steps
    assert params.model == "tiny-test"
    assert up.plan(parse_params({"steps": "2"}, models, LIMITS).choices).steps == 2
    assert up.plan(parse_params({"sampler": "ddpm"}, models, LIMITS).choices).steps == up.sched.timesteps


# ---------------------------------------------------------------------- several models
SHIPPED = {  # name -> (run fixture, export flags, description): as the three shipped models
    "lddpm-x4": ("tiny_run", ["--sampler", "ddim", "--steps", "3", "--consistency", "end"],
                 "the default, for tests"),
    "lddpm-x4-detail": ("gan_run", ["--sampler", "lddpm", "--consistency", "end"],
                        "the gan part's detail, for tests"),
    "lddpm-x4-real": ("tiny_run", ["--sampler", "ddim", "--steps", "1", "--consistency", "none"],
                      "camera and web photos, for tests"),
}


@pytest.fixture(scope="module")
def shipped_dir(request, tmp_path_factory):
    """A pretrained folder of tiny exports (`lddpm export ... --description ...`)."""
    folder = tmp_path_factory.mktemp("pretrained")
    for name, (run, flags, description) in SHIPPED.items():
        rc = main(["export", str(request.getfixturevalue(run)), str(folder / name), *flags,
                   "--description", description])
        assert rc == 0, name
    return folder


@pytest.fixture
def shipped(shipped_dir, monkeypatch):
    """The tiny exports as this install's shipped models."""
    monkeypatch.setattr(pretrained, "HERE", shipped_dir)
    assert list(pretrained.shipped_models()) == sorted(SHIPPED)
    return shipped_dir


def test_models_lists_every_shipped_model_with_its_defaults(shipped):
    """GET /api/models: the default first, each with its description and the samplers it can
    run (lddpm only with the gan part) at its own defaults; nothing is loaded to list them."""
    models = ModelCatalog.for_server(None)
    with running(create_app(models, LIMITS)) as port:
        status, body = get(port, "/api/models")
        assert status == 200
        listing = json.loads(body)
        info = json.loads(get(port, "/api/info")[1])
    assert listing["default"] == info["model"] == "lddpm-x4"
    by_name = {m["name"]: m for m in listing["models"]}
    assert [m["name"] for m in listing["models"]] == ["lddpm-x4", "lddpm-x4-detail", "lddpm-x4-real"]
    assert [m["default"] for m in listing["models"]] == [True, False, False]
    for name, (_, _, description) in SHIPPED.items():
        assert by_name[name]["description"] == description
        assert by_name[name]["source"] == "shipped" and by_name[name]["scale"] == SCALE
    default, detail, real = (by_name[n] for n in SHIPPED)
    assert (default["default_sampler"], default["consistency"]) == ("ddim", "end")
    assert default["samplers"]["ddim"] == {"default_steps": 3, "min_steps": 1, "max_steps": 1000}
    assert set(default["samplers"]) == set(real["samplers"]) == {"ddim", "ddpm"}
    assert (detail["default_sampler"], detail["consistency"]) == ("lddpm", "end")
    assert detail["samplers"]["lddpm"] == {"default_steps": 4, "min_steps": 4, "max_steps": 4}
    assert (real["default_sampler"], real["samplers"]["ddim"]["default_steps"],
            real["consistency"]) == ("ddim", 1, "none")
    assert models.loaded() == []


def test_a_request_is_served_by_the_model_it_names(shipped):
    """model=lddpm-x4-detail runs that model at its defaults (lddpm, 4 steps), loaded on first
    use; no model: the default one; an unknown model: a 400 naming those offered, and the
    server carries on."""
    models = ModelCatalog.for_server(None)
    with running(create_app(models, LIMITS)) as port:
        stream = list(events(post(port, png_bytes(16, 16), model="lddpm-x4-detail", name="a.png")))
        done = stream[-1]
        assert {"event": "loading", "model": "lddpm-x4-detail"} in stream
        assert (done["event"], done["model"], done["sampler"], done["steps"]) == (
            "done", "lddpm-x4-detail", "lddpm", 4)
        assert done["evaluations"] == 4
        assert models.loaded() == ["lddpm-x4-detail"]
        stream = list(events(post(port, png_bytes(16, 16), model="lddpm-x4-detail")))
        assert all(e["event"] != "loading" for e in stream)  # kept loaded
        done = final(post(port, png_bytes(16, 16)))
        assert (done["model"], done["sampler"], done["steps"]) == ("lddpm-x4", "ddim", 3)
        done = final(post(port, png_bytes(16, 16), model="lddpm-x4-real", sampler="ddim", steps=2))
        assert (done["model"], done["steps"], done["evaluations"]) == ("lddpm-x4-real", 2, 2)

        response = post(port, png_bytes(16, 16), model="no-such-model")
        assert response.status == 400
        message = error_of(response)
        assert "unknown model 'no-such-model'" in message and "lddpm-x4-detail" in message
        # a sampler the model cannot run is refused as before, model by model
        response = post(port, png_bytes(16, 16), model="lddpm-x4-real", sampler="lddpm")
        assert response.status == 400 and "gan part" in error_of(response)
        assert final(post(port, png_bytes(16, 16), model="lddpm-x4-detail"))["event"] == "done"


def test_the_loaded_models_are_bounded(shipped):
    """With room for two, a third model drops the one used least recently; asked for again,
    it is loaded again."""
    models = ModelCatalog.for_server(None, cache=2)
    with running(create_app(models, LIMITS)) as port:
        for name in ("lddpm-x4", "lddpm-x4-real", "lddpm-x4", "lddpm-x4-detail"):
            assert final(post(port, png_bytes(16, 16), model=name))["model"] == name
        assert models.loaded() == ["lddpm-x4", "lddpm-x4-detail"]  # real: least recently used
        stream = list(events(post(port, png_bytes(16, 16), model="lddpm-x4-real")))
        assert stream[-1]["event"] == "done" and any(e["event"] == "loading" for e in stream)
        assert models.loaded() == ["lddpm-x4-detail", "lddpm-x4-real"]


def test_a_checkpoint_is_offered_first_beside_the_shipped_models(shipped, tiny_run):
    """`lddpm serve --checkpoint X --steps 2`: X, labelled as given, is the default and the
    first; the server's sampling choices are its, the shipped models keep their own.
    `--checkpoint lddpm-x4-real`: that shipped model is the default, listed once."""
    models = ModelCatalog.for_server(str(tiny_run), "runs/tiny", SamplingChoices(steps=2, tile=8))
    listing = models.info()
    assert [m["name"] for m in listing["models"]] == ["runs/tiny", *SHIPPED]
    assert listing["default"] == "runs/tiny" and listing["models"][0]["source"] == "checkpoint"
    assert "runs/tiny" in listing["models"][0]["description"]
    assert models.check(None, models.entry(None).choices).steps == 2
    assert models.entry("lddpm-x4-real").choices == SamplingChoices(tile=8)
    assert models.loaded() == []

    models = ModelCatalog.for_server("lddpm-x4-real", "lddpm-x4-real")
    assert [m["name"] for m in models.info()["models"]] == [
        "lddpm-x4-real", "lddpm-x4", "lddpm-x4-detail"]
    assert models.default == "lddpm-x4-real"


def test_serve_without_the_default_shipped_model_is_one_line(tmp_path, monkeypatch, capsys):
    from lddpm.commands import serve

    def no_server(*_):
        raise AssertionError("the server should not start")

    monkeypatch.setattr(pretrained, "HERE", tmp_path)
    monkeypatch.setattr(serve, "_listen", no_server)
    assert main(["serve", "--port", "0"]) == 2
    assert "shipped model lddpm-x4 is missing" in capsys.readouterr().err
