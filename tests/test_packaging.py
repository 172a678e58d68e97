"""Packaging: what the core install needs, the extras, and the optional-dependency hints."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from lddpm.errors import UserError
from lddpm.extras import summary_writer


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    return tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


def test_tensorboard_is_only_in_the_train_extra():
    project = _pyproject()["project"]
    names = [re.split(r"[<>=\[ ;]", d)[0] for d in project["dependencies"]]
    assert "tensorboard" not in names  # upscaling needs only the core dependencies
    assert "tensorboard" in project["optional-dependencies"]["train"]
    assert "tensorboard" in project["optional-dependencies"]["dev"]


def test_no_empty_extra_and_setuptools_reads_the_spdx_license():
    pyproject = _pyproject()
    assert all(pyproject["project"]["optional-dependencies"].values())
    assert pyproject["project"]["license"] == "MIT"
    (setuptools,) = [r for r in pyproject["build-system"]["requires"] if "setuptools" in r]
    assert int(re.search(r">=\s*(\d+)", setuptools).group(1)) >= 77  # PEP 639 support


def test_missing_tensorboard_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import -> ImportError
    with pytest.raises(UserError, match=r"pip install 'lddpm\[train\]'"):
        summary_writer(str(tmp_path / "tb"))
