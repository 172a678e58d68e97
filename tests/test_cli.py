"""The `lddpm` command line: help, presets, upscale outputs, and one-line errors (exit 2)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SCALE, smooth_pattern, train_args, write_images
from PIL import Image

from lddpm.cli import main

FAST = ["--steps", "2"]  # DDIM with 2 steps: the sampler's cost is not what is tested here


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *needles: str) -> str:
    """Exit 2, exactly one `lddpm: error:` line, no traceback; returns that line."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "lddpm: error:" in line]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def lr_image(tmp_path) -> Path:
    """A small odd-sized LR photo (13 x 10): exercises the padding of the sampler entry point."""
    path = tmp_path / "lr.png"
    Image.fromarray(smooth_pattern(np.random.default_rng(1), 13, 10)).save(path)
    return path


@pytest.fixture
def corrupt_png(tmp_path) -> Path:
    """A real PNG with its second half cut off."""
    good = tmp_path / "whole.png"
    Image.fromarray(smooth_pattern(np.random.default_rng(2), 24, 24)).save(good)
    data = good.read_bytes()
    bad = tmp_path / "cut.png"
    bad.write_bytes(data[: len(data) // 2])
    return bad


# ------------------------------------------------------------------------------ help, presets
def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "upscale", "evaluate", "degrade", "presets"):
        assert command in out


def test_presets_lists_sizes_parts_and_parameter_counts(capsys):
    rc, out, _ = run_cli(capsys, "presets")
    assert rc == 0
    for name in ("paper", "small", "tiny", "+v1", "+v2", "+v3", "+glow", "+gan", "+lddpm"):
        assert name in out
    tiny_row = next(line for line in out.splitlines() if line.strip().startswith("tiny ") and "M" in line)
    assert "v3+glow+gan:" in tiny_row and "+ D" in tiny_row


# ------------------------------------------------------------------------------ errors
def test_missing_input_file(gan_run, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "upscale", tmp_path / "nope.png", "--output", tmp_path / "o",
                         "--checkpoint", gan_run)
    assert_one_line_error(rc, err, "nope.png")


def test_corrupt_png(gan_run, corrupt_png, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "upscale", corrupt_png, "--output", tmp_path / "o.png",
                         "--checkpoint", gan_run, *FAST)
    assert_one_line_error(rc, err, "cut.png")
    assert not (tmp_path / "o.png").exists()


def test_text_file_named_png(gan_run, tmp_path, capsys):
    fake = tmp_path / "notes.png"
    fake.write_text("these are not pixels\n")
    rc, _, err = run_cli(capsys, "upscale", fake, "--output", tmp_path / "o.png",
                         "--checkpoint", gan_run, *FAST)
    assert_one_line_error(rc, err, "notes.png", "not an image")


def test_bad_option(gan_run, lr_image, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "upscale", lr_image, "--output", tmp_path / "o.png",
                         "--checkpoint", gan_run, "--sampler", "foo")
    assert_one_line_error(rc, err, "--sampler", "foo")


def test_unknown_preset_part_lists_the_valid_parts(image_dir, tmp_path, capsys):
    rc, _, err = run_cli(capsys, *train_args("tiny+v9", image_dir, tmp_path / "run"))
    assert_one_line_error(rc, err, "v9", "v1, v2, v3, glow, gan")
    assert not (tmp_path / "run").exists()


def test_unknown_set_key_lists_the_valid_keys(image_dir, tmp_path, capsys):
    rc, _, err = run_cli(capsys, *train_args("tiny", image_dir, tmp_path / "run"),
                         "--set", "train.learning_rate=1")
    assert_one_line_error(rc, err, "train.learning_rate", "train.lr", "train.max_steps")


def test_missing_checkpoint(lr_image, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "upscale", lr_image, "--output", tmp_path / "o.png",
                         "--checkpoint", tmp_path / "no_run")
    assert_one_line_error(rc, err, "no_run")


def test_scale_mismatch(tiny_run, lr_image, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "upscale", lr_image, "--output", tmp_path / "o.png",
                         "--checkpoint", tiny_run, "--scale", "4")
    assert_one_line_error(rc, err, "--scale 4", f"x{SCALE}")


def test_lddpm_sampler_with_an_untrained_step_count_suggests_ddim(gan_run, lr_image, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "upscale", lr_image, "--output", tmp_path / "o.png",
                         "--checkpoint", gan_run, "--sampler", "lddpm", "--steps", "7")
    # the library says it in words; the CLI names the flag at fault
    assert_one_line_error(rc, err, "--steps 7:", "4 steps", "the ddim sampler with 7 steps")


def test_lddpm_sampler_needs_a_gan_checkpoint(tiny_run, lr_image, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "upscale", lr_image, "--output", tmp_path / "o.png",
                         "--checkpoint", tiny_run, "--sampler", "lddpm")
    assert_one_line_error(rc, err, "gan", "ddim")


# ------------------------------------------------------------------------------ upscale outputs
def test_upscale_writes_a_png_of_exactly_scale_times_the_input(tiny_run, lr_image, tmp_path, capsys):
    out = tmp_path / "sr.png"
    rc, _, err = run_cli(capsys, "upscale", lr_image, "--output", out, "--checkpoint", tiny_run, *FAST)
    assert rc == 0, err
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        assert im.size == (10 * SCALE, 13 * SCALE)


def test_no_overwrite_without_the_flag(tiny_run, lr_image, tmp_path, capsys):
    out = tmp_path / "sr.png"
    out.write_bytes(b"precious")
    rc, _, err = run_cli(capsys, "upscale", lr_image, "--output", out, "--checkpoint", tiny_run, *FAST)
    assert_one_line_error(rc, err, "sr.png", "--overwrite")
    assert out.read_bytes() == b"precious"

    rc, _, err = run_cli(capsys, "upscale", lr_image, "--output", out, "--checkpoint", tiny_run,
                         *FAST, "--overwrite")
    assert rc == 0, err
    with Image.open(out) as im:
        assert im.size == (10 * SCALE, 13 * SCALE)


def test_num_samples_writes_different_files(gan_run, lr_image, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "upscale", lr_image, "--output", tmp_path / "out",
                         "--checkpoint", gan_run, "--num-samples", "2", *FAST)
    assert rc == 0, err
    a, b = (np.asarray(Image.open(tmp_path / "out" / f"lr_x{SCALE}_s{k}.png")) for k in range(2))
    assert a.shape == b.shape == (13 * SCALE, 10 * SCALE, 3)
    assert not np.array_equal(a, b)


def test_reference_image_on_v3_and_a_clean_error_on_v1(gan_run, tiny_run, lr_image, tmp_path, capsys):
    reference = write_images(tmp_path / "refs", [(20, 20)], seed=3)[0]
    plain, with_ref = tmp_path / "plain.png", tmp_path / "ref.png"
    for out, extra in ((plain, []), (with_ref, ["--reference", reference])):
        rc, _, err = run_cli(capsys, "upscale", lr_image, "--output", out, "--checkpoint", gan_run,
                             *FAST, *extra)
        assert rc == 0, err
    assert np.asarray(Image.open(with_ref)).shape == np.asarray(Image.open(plain)).shape

    rc, _, err = run_cli(capsys, "upscale", lr_image, "--output", tmp_path / "v1.png",
                         "--checkpoint", tiny_run, "--reference", reference, *FAST)
    assert_one_line_error(rc, err, "reference")
    assert not (tmp_path / "v1.png").exists()


def test_folder_with_one_corrupt_file_upscales_the_rest(tiny_run, corrupt_png, tmp_path, capsys):
    folder = tmp_path / "in"
    write_images(folder, [(12, 12), (9, 14)], seed=4)
    shutil.copy(corrupt_png, folder / "broken.png")
    rc, _, err = run_cli(capsys, "upscale", folder, "--output", tmp_path / "out",
                         "--checkpoint", tiny_run, *FAST)
    assert rc == 2
    assert "Traceback" not in err and "broken.png" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"img0_x{SCALE}.png", f"img1_x{SCALE}.png"]
    with Image.open(tmp_path / "out" / f"img1_x{SCALE}.png") as im:
        assert im.size == (14 * SCALE, 9 * SCALE)


# ------------------------------------------------------------------------------ train
def test_train_refuses_an_existing_run_without_resume(tiny_run, image_dir, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = digest(run)
    rc, _, err = run_cli(capsys, *train_args("tiny", image_dir, run, 12))
    assert_one_line_error(rc, err, "--resume", str(run))
    assert digest(run) == before


def test_train_names_an_unreadable_file_before_training(image_dir, tmp_path, capsys):
    # Bug fixed: a non-image in the training folder surfaced minutes into training, wrapped
    # by a DataLoader worker; the dataset now reads every header up front.
    data = tmp_path / "data"
    shutil.copytree(image_dir, data)
    (data / "notes.png").write_text("not an image")
    code = main(train_args("tiny", data, tmp_path / "run"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("lddpm: error:") == 1 and "notes.png" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()
