"""`lddpm degrade` through the real CLI entry point: files, sidecar, errors, exit codes."""

import json

import numpy as np
import pytest
import torch

from lddpm.cli import main
from lddpm.config import DataConfig
from lddpm.data.datasets import EvalFolder
from lddpm.data.imageio import load_image, save_image, to_tensor
from lddpm.data.pipeline import Degradation


def _write(path, height, width, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    save_image(path, pixels)
    return pixels


@pytest.fixture
def hr_folder(tmp_path):
    root = tmp_path / "hr"
    _write(root / "wide.png", 26, 41, seed=1)
    _write(root / "sub" / "square.png", 24, 24, seed=2)
    return root


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_writes_lr_hr_and_sidecar(hr_folder, tmp_path):
    out = tmp_path / "out"
    code = main(["degrade", str(hr_folder), "--output", str(out), "--scale", "3", "--save-hr"])
    assert code == 0
    assert _files(out) == ["HR/sub/square.png", "HR/wide.png", "LR/sub/square.png",
                           "LR/wide.png", "degradations.json"]
    assert load_image(out / "LR" / "wide.png").shape == (8, 13, 3)
    hr = load_image(out / "HR" / "wide.png")
    assert np.array_equal(hr, load_image(hr_folder / "wide.png")[:24, :39])  # GTmod
    sidecar = json.loads((out / "degradations.json").read_text())
    assert sidecar["scale"] == 3 and sidecar["mode"] == "bicubic"
    assert set(sidecar["images"]) == {"wide", "sub/square"} and sidecar["failed"] == []


def test_bsrgan_same_seed_identical_bytes_other_seed_differs(hr_folder, tmp_path):
    def lr_bytes(name, seed):
        out = tmp_path / name
        assert main(["degrade", str(hr_folder), "--output", str(out), "--mode", "bsrgan",
                     "--seed", str(seed)]) == 0
        return (out / "LR" / "wide.png").read_bytes(), json.loads(
            (out / "degradations.json").read_text())["images"]["wide"]

    first, params = lr_bytes("a", 11)
    again, params_again = lr_bytes("b", 11)
    other, _ = lr_bytes("c", 12)
    assert first == again and params == params_again
    assert first != other
    assert params["mode"] == "bsrgan" and params["steps"][-1]["op"] == "final_jpeg"


def test_output_equals_the_eval_folder_of_the_same_seed(hr_folder, tmp_path):
    out = tmp_path / "out"
    assert main(["degrade", str(hr_folder), "--output", str(out), "--mode", "bsrgan", "--seed", "4"]) == 0
    dataset = EvalFolder(hr_folder, 4, Degradation(DataConfig(scale=4, degradation="bsrgan")),
                         seed=4)
    for sample in dataset:
        written = to_tensor(load_image(out / "LR" / f"{sample['name']}.png"))
        assert torch.equal(written, sample["lr"])


def test_corrupt_file_is_named_the_rest_degraded_exit_2(hr_folder, tmp_path, capsys):
    (hr_folder / "broken.png").write_text("not a png")
    out = tmp_path / "out"
    code = main(["degrade", str(hr_folder), "--output", str(out), "--scale", "2"])
    assert code == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "not an image" in err
    assert _files(out) == ["LR/sub/square.png", "LR/wide.png", "degradations.json"]
    sidecar = json.loads((out / "degradations.json").read_text())
    assert [p.endswith("broken.png") for p in sidecar["failed"]] == [True]


def test_existing_files_are_not_overwritten(hr_folder, tmp_path, capsys):
    out = tmp_path / "out"
    existing = out / "LR" / "wide.png"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"keep me")
    assert main(["degrade", str(hr_folder), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lddpm: error:") and "wide.png exists" in err and "--overwrite" in err
    assert _files(out) == ["LR/wide.png"] and existing.read_bytes() == b"keep me"
    assert main(["degrade", str(hr_folder), "--output", str(out), "--overwrite"]) == 0
    assert load_image(existing).shape == (6, 10, 3)


@pytest.mark.parametrize("argv, message", [
    (["--mode", "sharp"], "invalid choice"),
    (["--scale", "0"], "--scale must be >= 1"),
    (["--set", "train.lr=1"], "data.bsrgan"),
    (["--set", "data.bsrgan.jpeg_prob=2"], "jpeg_prob"),
])
def test_bad_options_exit_2_with_one_line(hr_folder, tmp_path, capsys, argv, message):
    assert main(["degrade", str(hr_folder), "--output", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_or_empty_input(tmp_path, capsys):
    assert main(["degrade", str(tmp_path / "nowhere"), "--output", str(tmp_path / "out")]) == 2
    assert "nowhere" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["degrade", str(tmp_path / "empty"), "--output", str(tmp_path / "out")]) == 2
    assert "no images" in capsys.readouterr().err
