"""The committed reports name no path of the machine that made them (benchmarks/harness.py
writes project-relative paths and `~/`, as lddpm.errors.display_path does)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT_FILES = sorted(p for ext in ("md", "json", "csv") for p in (ROOT / "docs").glob(f"*.{ext}"))
# a machine's absolute path: /work/..., /root/..., /home/u/..., /tmp/..., C:\...; not a
# program named by its path such as /usr/bin/time, and not a URL's path
MACHINE_PATH = re.compile(r"(?<![\w.~/:-])/(?:work|root|home|tmp|Users|mnt|var|opt|private)/"
                          r"|\b[A-Z]:\\\\?[\w.-]")


@pytest.mark.parametrize("path", TEXT_FILES + [ROOT / "README.md"], ids=lambda p: p.name)
def test_no_machine_path(path):
    text = path.read_text()
    found = [f"line {text.count(chr(10), 0, m.start()) + 1}: {text[m.start():m.start() + 60]!r}"
             for m in MACHINE_PATH.finditer(text)]
    assert not found, found
