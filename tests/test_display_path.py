"""How messages and reports show paths: relative inside the current folder, `~` in home,
else absolute as given (never a `../../` walk that hides where the file is)."""

from __future__ import annotations

from pathlib import Path

from lddpm.errors import display_path


def test_inside_the_current_folder_is_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "runs" / "a.png") == str(Path("runs") / "a.png")


def test_inside_home_uses_a_tilde(tmp_path, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir(), work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert display_path(home / "photos" / "x.jpg") == "~/photos/x.jpg"


def test_elsewhere_is_the_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "a"))
    monkeypatch.chdir(tmp_path / "a")
    assert display_path(tmp_path / "b" / "x.png") == str(tmp_path / "b" / "x.png")
