"""`lddpm evaluate`: benchmark layouts, the evaluation loop, tables, JSON/CSV, --compare."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lddpm.cli import main
from lddpm.commands.evaluate import parse_entry
from lddpm.data.layouts import open_dataset, resolve_layout
from lddpm.errors import UserError
from lddpm.evaluation import (
    NFE,
    SECONDS,
    BicubicMethod,
    MethodResult,
    ModelMethod,
    evaluate_method,
)
from lddpm.metrics import MetricSuite
from lddpm.reports import Column, compare_table


def _png(path: Path, height: int, width: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def _benchmark_tree(root: Path) -> None:
    """Set5-, GTmod12- and DIV2K-style sets, HR 24x32 (x4 LR 6x8, x2 LR 12x16)."""
    for name in ("baby", "bird"):
        _png(root / "Set5" / "HR" / f"{name}.png", 24, 32)
        _png(root / "Set5" / "LR_bicubic" / "X4" / f"{name}x4.png", 6, 8)
        _png(root / "Set5" / "LR_bicubic" / "X2" / f"{name}x2.png", 12, 16)
        _png(root / "Set14" / "GTmod12" / f"{name}.png", 24, 32)
        _png(root / "Set14" / "LRbicx4" / f"{name}.png", 6, 8)
    for name in ("0801", "0802"):
        _png(root / "DIV2K" / "DIV2K_valid_HR" / f"{name}.png", 24, 32)
        _png(root / "DIV2K" / "DIV2K_valid_LR_bicubic" / "X4" / f"{name}x4.png", 6, 8)
        _png(root / "degraded" / "HR" / f"{name}.png", 24, 32)  # `lddpm degrade --save-hr`
        _png(root / "degraded" / "LR" / f"{name}.png", 6, 8)


# ----------------------------------------------------------------------------------------------
# Layouts
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, kind, hr, lr",
    [
        ("Set5", "set-hr-lr_bicubic", "Set5/HR", "Set5/LR_bicubic/X4"),
        ("Set5/HR", "set-hr-lr_bicubic", "Set5/HR", "Set5/LR_bicubic/X4"),
        ("Set14", "gtmod12", "Set14/GTmod12", "Set14/LRbicx4"),
        ("Set14/GTmod12", "gtmod12", "Set14/GTmod12", "Set14/LRbicx4"),
        ("DIV2K", "div2k", "DIV2K/DIV2K_valid_HR", "DIV2K/DIV2K_valid_LR_bicubic/X4"),
        ("DIV2K/DIV2K_valid_HR", "div2k", "DIV2K/DIV2K_valid_HR",
         "DIV2K/DIV2K_valid_LR_bicubic/X4"),
        ("degraded", "hr-lr", "degraded/HR", "degraded/LR"),
        ("Set5/LR_bicubic/X2", "hr-folder", "Set5/LR_bicubic/X2", None),
    ],
)  # fmt: skip
def test_benchmark_layouts_are_found(tmp_path, data, kind, hr, lr):
    _benchmark_tree(tmp_path)
    layout = resolve_layout(tmp_path / data, scale=4)
    assert layout.kind == kind
    assert layout.hr_dir == tmp_path / hr
    assert layout.lr_dir == (tmp_path / lr if lr else None)


def test_scale_picks_the_lr_subfolder(tmp_path):
    _benchmark_tree(tmp_path)
    assert resolve_layout(tmp_path / "Set5", 2).lr_dir == tmp_path / "Set5/LR_bicubic/X2"
    with pytest.raises(UserError, match="no x3 LR folder .*found: X2, X4"):
        resolve_layout(tmp_path / "Set5", 3)


def test_benchmark_pairs_match_by_name_with_the_x_suffix(tmp_path):
    _benchmark_tree(tmp_path)
    for data in ("Set5", "Set14", "DIV2K", "degraded"):
        dataset = open_dataset(resolve_layout(tmp_path / data, 4), 4)
        assert len(dataset) == 2
        item = dataset[0]
        assert item["name"] in ("baby", "0801")
        assert item["lr"].shape == (3, 6, 8) and item["hr"].shape == (3, 24, 32)


def test_hr_folder_gets_lr_from_the_degradation(tmp_path):
    _png(tmp_path / "photos" / "a.png", 26, 33)  # not a multiple of 4: cropped to 24x32
    dataset = open_dataset(resolve_layout(tmp_path / "photos", 4), 4)
    item = dataset[0]
    assert item["hr"].shape == (3, 24, 32) and item["lr"].shape == (3, 6, 8)


def test_size_mismatch_names_the_file(tmp_path):
    _benchmark_tree(tmp_path)
    bad = _png(tmp_path / "Set5" / "LR_bicubic" / "X4" / "birdx4.png", 7, 8)
    with pytest.raises(UserError, match=str(bad)):
        open_dataset(resolve_layout(tmp_path / "Set5", 4), 4)


def test_missing_data_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        resolve_layout(tmp_path / "nowhere", 4)


# ----------------------------------------------------------------------------------------------
# Entries, loop and tables (with a fake upscaler)
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "entry, expected",
    [
        ("runs/a:ddim:20", ("runs/a", "ddim", 20)),
        ("runs/a:ddpm", ("runs/a", "ddpm", None)),
        ("runs/a", ("runs/a", "ddim", 7)),
        ("C:/runs/a:lddpm:4", ("C:/runs/a", "lddpm", 4)),
    ],
)
def test_parse_entry(entry, expected):
    assert parse_entry(entry, "ddim", 7) == expected


def test_bad_steps_in_an_entry_is_a_user_error():
    with pytest.raises(UserError, match="STEPS"):
        parse_entry("runs/a:ddim:many", "ddim", None)


def _plan(sampler: str = "ddim", steps: int = 5, num_samples: int = 1):
    from lddpm.diffusion.plan import SamplingPlan

    return SamplingPlan(sampler, np.arange(steps)[::-1] * 10, 0.0, "none", 0, 0, 1, num_samples,
                        torch.device("cpu"), "fp32")


class FakeUpscaler:
    """The Upscaler interface; returns bicubic plus seed-dependent noise per sample, and
    counts `tiles` network evaluations per step and sample, as a tiled Upscaler does."""

    def __init__(self, scale: int, tiles: int = 1):
        self.scale, self.tiles, self.evaluations = scale, tiles, 0

    def upscale(self, lr, seed=0, plan=None):
        num_samples = plan.num_samples
        self.evaluations += self.tiles * plan.steps * num_samples
        base = BicubicMethod(self.scale).upscale(lr, seed, 1)[0]
        noise = [torch.randn(base.shape, generator=torch.Generator().manual_seed(seed + s))
                 for s in range(num_samples)]  # fmt: skip
        return torch.stack([(base + 0.02 * n).clamp(0, 1) for n in noise])


def _photos(tmp_path: Path) -> Path:
    for i in range(2):
        _png(tmp_path / "photos" / f"p{i}.png", 32, 32, seed=i)
    return tmp_path / "photos"


def test_loop_rows_means_and_diversity(tmp_path):
    dataset = open_dataset(resolve_layout(_photos(tmp_path), 4), 4)
    suite = MetricSuite(["psnr", "ssim", "lr_psnr"])
    method = ModelMethod(FakeUpscaler(4, tiles=2), "fake", _plan(steps=5), "fake")
    result = evaluate_method(method, dataset, suite, 4, seed=0, num_samples=3)
    assert [r["image"] for r in result.rows] == ["p0", "p1"]
    assert result.means[NFE] == 30.0  # 5 steps x 3 samples x 2 tiles, as counted
    for column in ("PSNR-Y", "SSIM-Y", "LR-PSNR", SECONDS, "diversity"):
        expected = np.mean([r[column] for r in result.rows])
        assert result.means[column] == pytest.approx(expected)
    assert 2.0 < result.means["diversity"] < 8.0  # std of 0.02 noise ~ 5 in 8-bit units
    bicubic = evaluate_method(BicubicMethod(4), dataset, suite, 4)
    assert bicubic.means["PSNR-Y"] > result.means["PSNR-Y"]  # the noise costs PSNR
    assert bicubic.means[NFE] == 0.0


def _result(label: str, kind: str, **means: float) -> MethodResult:
    return MethodResult(label, {"kind": kind}, [], dict(means))


def test_compare_table_bolds_the_best_of_each_column():
    columns = [Column("PSNR-Y", True, 2), Column("LPIPS", False, 4), Column(SECONDS, False, 3),
               Column(NFE, False, 0)]  # fmt: skip
    results = [
        _result("bicubic", "bicubic", **{"PSNR-Y": 25.0, "LPIPS": 0.5, SECONDS: 0.001, NFE: 0}),
        _result("a", "model", **{"PSNR-Y": 27.0, "LPIPS": 0.3, SECONDS: 2.0, NFE: 4}),
        _result("b", "model", **{"PSNR-Y": 26.0, "LPIPS": 0.2, SECONDS: 9.0, NFE: 50}),
    ]
    lines = compare_table(results, columns).splitlines()
    assert lines[0] == "| method | PSNR-Y | LPIPS | sec/img | NFE/img |"
    assert lines[2] == "| bicubic | 25.00 | 0.5000 | 0.001 | 0 |"  # baseline never wins cost
    assert lines[3] == "| a | **27.00** | 0.3000 | **2.000** | **4** |"
    assert lines[4] == "| b | 26.00 | **0.2000** | 9.000 | 50 |"


# ----------------------------------------------------------------------------------------------
# The command, end to end with real tiny checkpoints (conftest: x2 `tiny` run)
# ----------------------------------------------------------------------------------------------
def _table_rows(out: str) -> list[list[str]]:
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]  # no header, rule


@pytest.fixture
def small_photos(tmp_path) -> Path:
    """Two 24x24 photos: cheap to sample with the x2 tiny model."""
    for i in range(2):
        _png(tmp_path / "small" / f"img{i}.png", 24, 24, seed=i)
    return tmp_path / "small"


def test_compare_puts_two_entries_and_bicubic_in_one_table(
    tiny_run, small_photos, tmp_path, capsys
):
    report, table = tmp_path / "r.json", tmp_path / "r.csv"
    entries = [f"{tiny_run}:ddim:1", f"{tiny_run}:ddim:2"]
    code = main(["evaluate", "--compare", *entries, "bicubic", "--data", str(small_photos),
                 "--scale", "2", "--report", str(report),
                 "--csv", str(table), "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    rows = _table_rows(out)
    assert [r[0] for r in rows] == ["bicubic", *entries]
    assert [r[-1].strip("*") for r in rows] == ["0", "1", "2"]  # NFE/img
    saved = json.loads(report.read_text())
    assert [m["name"] for m in saved["methods"]] == ["bicubic", *entries]
    assert [m["steps"] for m in saved["methods"][1:]] == [1, 2]
    assert all(len(m["images"]) == 2 for m in saved["methods"])
    assert saved["dataset"]["layout"] == "hr-folder" and saved["dataset"]["scale"] == 2
    with table.open() as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 3 * (2 + 1)  # per method: 2 images + the mean row
    assert {line["image"] for line in lines} == {"img0", "img1", "mean"}
    assert all(line[SECONDS] for line in lines) and all(line[NFE] for line in lines)


def test_compare_x8_suffix_runs_the_entry_with_self_ensemble(tiny_run, small_photos, tmp_path, capsys):
    report = tmp_path / "r.json"
    entries = [f"{tiny_run}:ddim:1", f"{tiny_run}:ddim:1:x8"]
    code = main(["evaluate", "--compare", *entries, "--data", str(small_photos), "--scale", "2",
                 "--report", str(report), "--no-progress"])
    assert code == 0
    rows = _table_rows(capsys.readouterr().out)
    assert [r[0] for r in rows] == ["bicubic", *entries]
    assert [r[-1].strip("*") for r in rows] == ["0", "1", "8"]  # NFE/img: 8 passes of 1 step
    saved = json.loads(report.read_text())
    assert [m["self_ensemble"] for m in saved["methods"][1:]] == [False, True]


def test_single_checkpoint_table_per_image_and_mean(tiny_run, small_photos, capsys):
    code = main(["evaluate", "--checkpoint", str(tiny_run), "--data", str(small_photos),
                 "--steps", "1", "--num-samples", "2", "--max-images", "2",
                 "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    header = next(line for line in out.splitlines() if line.startswith("| image"))
    # no NIQE column: every image is under NIQE's 192 px (the reason goes to stderr)
    assert header == "| image | PSNR-Y | SSIM-Y | LR-PSNR | detail | sec/img | diversity |"
    assert [r[0] for r in _table_rows(out)] == ["img0", "img1", "**mean**"]
    assert "2 model evaluations per image" in out  # 1 step x 2 samples


def test_scale_disagreeing_with_the_checkpoint_is_refused(tiny_run, image_dir, capsys):
    code = main(["evaluate", "--checkpoint", str(tiny_run), "--data", str(image_dir),
                 "--scale", "4"])  # fmt: skip
    assert code == 2
    assert "trained for x2" in capsys.readouterr().err


def test_checkpoint_or_compare_is_required(image_dir, capsys):
    assert main(["evaluate", "--data", str(image_dir), "--scale", "2"]) == 2
    assert "--checkpoint DIR or --compare" in capsys.readouterr().err


def test_nfe_counts_every_tile_and_sample_of_a_real_upscaler():
    # the NFE/img column used to report steps x samples whatever the tiling (2 where 8 ran)
    from lddpm.config import build_preset
    from lddpm.inference import Upscaler
    from lddpm.models.lddpm import LDDPMNet

    cfg = build_preset("tiny")
    cfg.data.scale = 2
    upscaler = Upscaler(LDDPMNet(cfg.model, 2), cfg)
    method = ModelMethod(upscaler, "tiny", upscaler.plan(sampler="ddim", steps=2, tile=16), "none")
    lr = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    method.upscale(lr, seed=0, num_samples=2)  # tiles of 16 overlapping by 4: 2 x 2 of them
    assert method.model_evaluations() == 2 * 4 * 2
    method.upscale(lr[..., :16, :16], seed=0, num_samples=1)  # one tile: the last call only
    assert method.model_evaluations() == 2


def test_evaluate_measures_and_saves_the_bytes_lddpm_upscale_writes(tiny_run, tmp_path, capsys):
    """Issue 20: the same image, seed and options give the same plan (sampler, steps,
    consistency, tiling, precision, device) in both commands, so `evaluate --save-images`
    writes, under upscale's names, exactly the files `lddpm upscale` writes."""
    from lddpm.precision import cpu_has_fast_bf16

    _png(tmp_path / "HR" / "photo.png", 24, 40, seed=5)
    lr = _png(tmp_path / "LR" / "photo.png", 12, 20, seed=6)
    options = ["--checkpoint", str(tiny_run), "--seed", "3", "--steps", "2", "--num-samples", "2",
               "--tile", "8", "--tile-overlap", "2", "--consistency", "end"]
    report = tmp_path / "report.json"
    assert main(["evaluate", *options, "--data", str(tmp_path / "HR"), "--lr-data",
                 str(tmp_path / "LR"), "--save-images", str(tmp_path / "measured"),
                 "--metrics", "psnr", "--report", str(report), "--no-progress"]) == 0
    assert main(["upscale", str(lr), *options, "--output", str(tmp_path / "written")]) == 0
    capsys.readouterr()
    names = ["photo_x2_s0.png", "photo_x2_s1.png"]
    assert sorted(p.name for p in (tmp_path / "measured").iterdir()) == names
    for name in names:
        assert (tmp_path / "measured" / name).read_bytes() == (tmp_path / "written" / name).read_bytes()
    info = json.loads(report.read_text())["methods"][0]
    # --precision auto in both: bf16 where the CPU has it fast, as upscale always did
    assert info["precision"] == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert (info["sampler"], info["steps"], info["tile"], info["consistency"]) == ("ddim", 2, 8, "end")


def test_a_bad_sampling_option_names_its_flag(tiny_run, small_photos, capsys):
    code = main(["evaluate", "--checkpoint", str(tiny_run), "--data", str(small_photos),
                 "--steps", "0"])
    assert code == 2
    assert "lddpm: error: --steps 0: steps must be in 1.." in capsys.readouterr().err
    code = main(["evaluate", "--compare", f"{tiny_run}:ddpm:3", "--data", str(small_photos)])
    assert code == 2
    assert f"--compare {tiny_run}:ddpm:3: ddpm runs all" in capsys.readouterr().err
