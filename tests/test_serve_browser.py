"""`lddpm serve` in a real headless Chromium (Debian's `chromium` + `chromium-driver`, Selenium).

Starts the real command (`python -m lddpm serve --port 0`) on a free port, uploads a file
that is not an image (the page shows the error), then examples/chelsea.png, waits for the
result, checks its size in the page (the checkpoint's scale times the input's), moves the
slider, and saves a screenshot. Skipped, with the reason, when the browser is not installed
(`make browser` installs it); a browser that is installed but fails is a failure.

The README's docs/web.png is this test's screenshot, taken with the shipped default model
(a shipped name is passed to `lddpm serve` as a name, a run or checkpoint as its path):
    LDDPM_WEB_CHECKPOINT=lddpm-x4 LDDPM_WEB_SCREENSHOT=$PWD/docs/web.png \
        pytest tests/test_serve_browser.py
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # a browser and a server process (make test-fast leaves it out)

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[web]'")
pytest.importorskip("uvicorn", reason="the web extra is not installed: pip install -e '.[web]'")
pytest.importorskip("selenium", reason="selenium is not installed: pip install -e '.[dev]'")

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from lddpm.checkpoint import read_config, resolve_checkpoint
from lddpm.pretrained import resolve_model, shipped_models

CHELSEA = Path(__file__).resolve().parents[1] / "examples" / "chelsea.png"
RESULT_TIMEOUT = 300  # seconds for one upscale in the page (a real model on a busy CPU)


def browser_paths() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        missing = "chromium" if not chromium else "chromedriver"
        pytest.skip(f"{missing} is not installed: `make browser` (or apt-get install chromium "
                    "chromium-driver) installs headless Chromium for this test")
    return chromium, driver


@pytest.fixture
def browser():
    chromium, driver_path = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--hide-scrollbars"):
        options.add_argument(arg)  # --no-sandbox: CI containers run as root
    # An explicit driver path: Selenium Manager then downloads nothing.
    service = webdriver.ChromeService(executable_path=driver_path)
    try:
        driver = webdriver.Chrome(options=options, service=service)
    except WebDriverException as exc:
        pytest.fail(f"headless Chromium is installed but did not start: {exc.msg}")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def served(tiny_run, tmp_path):
    """`lddpm serve` as a subprocess on a free port; yields (url, scale); stops it with Ctrl-C."""
    checkpoint = os.environ.get("LDDPM_WEB_CHECKPOINT") or str(tiny_run)
    scale = read_config(resolve_checkpoint(resolve_model(checkpoint))).data.scale
    if checkpoint not in shipped_models():  # a shipped name is passed as a name (the page shows it)
        checkpoint = os.path.abspath(checkpoint)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cwd = tmp_path / "server_cwd"  # must stay empty: the server writes only to its temp folder
    cwd.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lddpm", "serve", "--checkpoint", checkpoint,
         "--port", "0"],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield first_url(proc), scale
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert not any(cwd.iterdir()), "lddpm serve wrote outside its temporary folder"


def first_url(proc: subprocess.Popen, timeout: float = 120) -> str:
    """The URL from the server's first line (read in a thread, so the wait is bounded)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(proc.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        pytest.fail("lddpm serve printed no URL")
    match = re.search(r"http://\S+/", line)
    assert match, f"no URL in {line!r}; stderr: {proc.stderr.read() if proc.poll() else ''}"
    return match.group(0)


def upload(driver, path: Path, steps: int | None = None) -> None:
    driver.find_element(By.ID, "file-input").send_keys(str(path))
    if steps is not None:
        field = driver.find_element(By.ID, "steps")
        field.clear()
        field.send_keys(str(steps))
    driver.find_element(By.ID, "run").click()


def test_upload_bad_file_then_photo_compare_and_download(browser, served, tmp_path):
    url, scale = served
    browser.get(url)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sampler option"))

    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is a text file, not a picture")
    upload(browser, bad)
    error = browser.find_element(By.ID, "error")
    wait.until(lambda d: error.is_displayed())
    assert "notes.png: not an image file" in error.text

    # the tiny test model takes 50 default steps x 12 tiles; 10 are enough to see it work
    upload(browser, CHELSEA, steps=None if os.environ.get("LDDPM_WEB_CHECKPOINT") else 10)
    WebDriverWait(browser, RESULT_TIMEOUT).until(lambda d: d.execute_script(
        "const img = document.getElementById('result-after');"
        "return !document.getElementById('result-panel').hidden && img.complete"
        " && img.naturalWidth > 0;"))
    assert not error.is_displayed()
    width, height = Image.open(CHELSEA).size
    for image_id in ("result-after", "result-before"):
        size = browser.execute_script(
            f"const i = document.getElementById('{image_id}'); return [i.naturalWidth, i.naturalHeight];")
        assert size == [scale * width, scale * height], image_id
    assert browser.find_element(By.ID, "result-size").text == f"{scale * width} × {scale * height}"
    assert int(browser.find_element(By.ID, "result-evaluations").text) > 0
    assert browser.find_element(By.ID, "result-seconds").text.endswith(" s")

    browser.execute_script(
        "const s = document.getElementById('slider'); s.value = 30;"
        "s.dispatchEvent(new Event('input'));")
    clip = browser.execute_script("return document.getElementById('result-after').style.clipPath;")
    assert clip == "inset(0px 0px 0px 30%)"

    link = browser.find_element(By.ID, "download")
    assert link.get_attribute("download") == f"chelsea_x{scale}.png"
    with urllib.request.urlopen(link.get_attribute("href"), timeout=60) as response:
        downloaded = tmp_path / "download.png"
        downloaded.write_bytes(response.read())
    assert Image.open(downloaded).size == (scale * width, scale * height)

    browser.execute_script("document.getElementById('slider').value = 50;"
                           "document.getElementById('slider').dispatchEvent(new Event('input'));")
    shot = tmp_path / "web.png"
    assert browser.save_screenshot(str(shot))
    if os.environ.get("LDDPM_WEB_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["LDDPM_WEB_SCREENSHOT"])
