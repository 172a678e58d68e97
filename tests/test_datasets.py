"""Degradation pipeline and the three datasets: sizes, determinism, errors."""

import numpy as np
import pytest
import torch

from lddpm.config import DataConfig, DegradationConfig
from lddpm.data import datasets
from lddpm.data.datasets import EvalFolder, HRFolder, PairedFolder
from lddpm.data.imageio import save_image, to_tensor
from lddpm.data.pipeline import Degradation, bsrgan, bsrgan_order, generator_for, quantize
from lddpm.data.resize import imresize
from lddpm.errors import UserError


def _degradation(mode="bicubic", scale=4, **bsrgan):
    return Degradation(DataConfig(scale=scale, degradation=mode,
                                  bsrgan=DegradationConfig(**bsrgan)))


def _write(path, height, width, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    save_image(path, pixels)
    return pixels


# ---------------------------------------------------------------------------- pipeline
@pytest.mark.parametrize("mode", ["bicubic", "bsrgan"])
@pytest.mark.parametrize("scale, hw", [(2, (32, 48)), (3, (27, 33)), (4, (64, 40)), (8, (64, 72))])
def test_lr_is_exactly_hr_over_s(mode, scale, hw):
    hr = torch.rand(3, *hw)
    lr, params = _degradation(mode, scale)(hr, generator_for(0, 0, 0))
    assert lr.shape == (3, hw[0] // scale, hw[1] // scale) and lr.dtype == torch.float32
    assert 0.0 <= lr.min() and lr.max() <= 1.0
    assert torch.equal(lr, quantize(lr))  # on 8-bit levels, as a saved PNG
    assert params["mode"] == mode and params["scale"] == scale


def test_bsrgan_same_seed_same_bytes_different_seed_different_lr():
    hr, degrade = torch.rand(3, 32, 32), _degradation("bsrgan", 4)
    first, params = degrade(hr, generator_for(7, 0, 3))
    again, params_again = degrade(hr, generator_for(7, 0, 3))
    assert first.numpy().tobytes() == again.numpy().tobytes() and params == params_again
    others = [degrade(hr, generator_for(seed, 0, 3))[0] for seed in (8, 9)]
    assert all(not torch.equal(first, other) for other in others)


def test_bicubic_mode_is_quantised_matlab_imresize():
    hr = torch.rand(3, 24, 36)
    lr, _ = _degradation("bicubic", 3)(hr, None)
    expected = quantize(imresize(hr.double(), scale=1 / 3)).float()
    assert torch.equal(lr, expected)


def test_bsrgan_with_every_op_off_is_a_plain_resize_and_records_nothing_else():
    degrade = _degradation("bsrgan", 2, blur_prob=0.0, intermediate_resize_prob=0.0,
                           noise_prob=0.0, jpeg_prob=0.0, final_jpeg_prob=0.0,
                           sensor_noise_prob=0.0, downsample_modes=("bicubic",))
    hr = torch.rand(3, 16, 16)
    lr, params = degrade(hr, generator_for(0, 0, 0))
    assert [step["op"] for step in params["steps"]] == ["resize_final"]
    assert torch.equal(lr, _degradation("bicubic", 2)(hr, None)[0])


def test_bsrgan_clean_prob_keeps_that_share_of_samples_clean_and_zero_draws_nothing():
    hr = torch.rand(3, 32, 32)
    clean = _degradation("bicubic", 4)(hr, None)[0]
    always = _degradation("bsrgan", 4, clean_prob=1.0)
    lr, params = always(hr, generator_for(0, 0, 0))
    assert torch.equal(lr, clean) and params["mode"] == "bicubic"
    # clean_prob 0 consumes no random number: the chain is the one a config without it drew
    off = _degradation("bsrgan", 4, clean_prob=0.0)(hr, generator_for(3, 0, 1))[0]
    rng = generator_for(3, 0, 1)
    expected = quantize(torch.from_numpy(bsrgan(hr.double().permute(1, 2, 0).numpy(), 4,
                                                DegradationConfig(), rng)[0].transpose(2, 0, 1).copy())).float()
    assert torch.equal(off, expected)
    half = _degradation("bsrgan", 4, clean_prob=0.3)
    modes = [half(hr, generator_for(0, 0, i))[1]["mode"] for i in range(200)]
    assert 0.2 < modes.count("bicubic") / 200 < 0.4


def test_bsrgan_order_keeps_the_intermediate_resize_first():
    for seed in range(30):
        order = bsrgan_order(np.random.default_rng(seed), shuffle=True)
        assert order.index("resize_intermediate") < order.index("resize_final")
        assert order[-1] == "final_jpeg" and order.count("blur") == 2


def test_pipeline_errors_are_clear():
    with pytest.raises(UserError, match="not a positive multiple of the scale 4"):
        _degradation("bicubic", 4)(torch.rand(3, 30, 32), None)
    with pytest.raises(UserError, match="data.bsrgan.noise_prob"):
        _degradation("bsrgan", 4, noise_prob=1.5)
    with pytest.raises(UserError, match="data.bsrgan.clean_prob"):
        _degradation("bsrgan", 4, clean_prob=-0.1)
    with pytest.raises(UserError, match="downsample_modes"):
        _degradation("bsrgan", 4, downsample_modes=("lanczos",))
    with pytest.raises(UserError, match="data.degradation"):
        Degradation(DataConfig(degradation="realesrgan"))


# ---------------------------------------------------------------------------- HRFolder
@pytest.fixture
def photo_folder(tmp_path):
    root = tmp_path / "photos"
    _write(root / "a.png", 50, 60, seed=1)
    _write(root / "sub" / "b.png", 40, 45, seed=2)
    _write(root / "tiny.png", 10, 12, seed=3)  # smaller than the crop: mirror-padded
    return root


def test_hrfolder_shapes_and_range(photo_folder):
    dataset = HRFolder(photo_folder, scale=4, crop=34, degradation=_degradation("bicubic", 4))
    assert len(dataset) == 3 and dataset.crop == 32
    for index in range(3):
        sample = dataset[index]
        assert sample["hr"].shape == (3, 32, 32) and sample["lr"].shape == (3, 8, 8)
        assert sample["hr"].dtype == torch.float32 and sample["index"] == index
        for key in ("hr", "lr"):  # [0, 1], as every dataset and the Upscaler (datasets.py)
            assert 0.0 <= sample[key].min() and sample[key].max() <= 1.0
        assert sample["hr"].min() < 0.5 < sample["hr"].max()  # not squeezed into half the range


def test_hrfolder_is_a_function_of_index_and_epoch(photo_folder):
    def make():
        return HRFolder(photo_folder, 4, 32, _degradation("bsrgan", 4), seed=5)

    first, fresh = make(), make()  # a new instance (another worker, a resumed run)
    a, b = first[(0, 3)], fresh[(0, 3)]
    assert torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr"], b["lr"])
    assert torch.equal(first[0]["hr"], first[(0, 0)]["hr"])
    assert not torch.equal(a["hr"], first[(0, 4)]["hr"])  # next epoch: another crop



def test_hrfolder_references_are_other_crops_of_the_same_photo(photo_folder):
    plain = HRFolder(photo_folder, 2, 16, _degradation("bicubic", 2), augment=False)
    with_refs = HRFolder(photo_folder, 2, 16, _degradation("bicubic", 2), augment=False, references=True)
    a, b = plain[(0, 1)], with_refs[(0, 1)]
    assert "ref" not in a  # nothing extra is drawn or degraded without references
    assert torch.equal(a["hr"], b["hr"]) and torch.equal(a["lr"], b["lr"])  # the main crop unchanged
    assert b["ref"].shape == b["lr"].shape and not torch.equal(b["ref"], b["lr"])
    # at scale 1 the "LR" is the crop itself: the reference is a window of the same photo
    same = HRFolder(photo_folder, 1, 8, _degradation("bicubic", 1), augment=False, references=True)
    source = to_tensor(np.asarray(datasets.load_image(same.files[0])))  # [0, 1], as items are
    windows = source.unfold(1, 8, 1).unfold(2, 8, 1)
    ref = same[(0, 2)]["ref"]
    assert bool((windows == ref[:, None, None]).all(dim=(0, 3, 4)).any())

def test_hrfolder_crop_comes_from_the_image(photo_folder):
    dataset = HRFolder(photo_folder, 2, 8, _degradation("bicubic", 2), augment=False)
    source = to_tensor(np.asarray(datasets.load_image(dataset.files[0])))  # [0, 1], as items are
    patch = dataset[(0, 0)]["hr"]
    windows = source.unfold(1, 8, 1).unfold(2, 8, 1)  # (3, H-7, W-7, 8, 8)
    matches = (windows == patch[:, None, None]).all(dim=(0, 3, 4))
    assert bool(matches.any())


def test_hrfolder_caches_decoded_images(photo_folder, monkeypatch):
    calls = []
    real_load = datasets.load_image
    monkeypatch.setattr(datasets, "load_image", lambda *a: calls.append(a) or real_load(*a))
    dataset = HRFolder(photo_folder, 4, 32, _degradation("bicubic", 4))
    for epoch in range(3):
        dataset[(1, epoch)]
    assert len(calls) == 1
    small = HRFolder(photo_folder, 4, 32, _degradation("bicubic", 4), cache_bytes=50 * 60 * 3)
    small[0], small[1], small[0]
    assert small._cache.used <= 50 * 60 * 3 and len(calls) == 4  # evicted, decoded again


def test_hrfolder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        HRFolder(tmp_path / "empty", 4, 32, _degradation())
    with pytest.raises(UserError, match="folder not found"):
        HRFolder(tmp_path / "missing", 4, 32, _degradation())
    _write(tmp_path / "one" / "x.png", 8, 8)
    with pytest.raises(UserError, match="data.crop=3"):
        HRFolder(tmp_path / "one", 4, 3, _degradation())


# ---------------------------------------------------------------------------- PairedFolder
def test_paired_folder_matches_names_and_crops_gtmod(tmp_path):
    hr = _write(tmp_path / "HR" / "0801.png", 26, 33)  # not divisible by 4
    _write(tmp_path / "HR" / "baby.png", 16, 16)
    lr = _write(tmp_path / "LR" / "0801x4.png", 6, 8)  # DIV2K-style name
    _write(tmp_path / "LR" / "baby.png", 4, 4)
    dataset = PairedFolder(tmp_path / "HR", tmp_path / "LR", scale=4)
    assert dataset.names == ["0801", "baby"]
    sample = dataset[0]
    assert sample["name"] == "0801" and sample["hr"].shape == (3, 24, 32)
    assert torch.equal(sample["hr"], to_tensor(np.ascontiguousarray(hr[:24, :32])))
    assert torch.equal(sample["lr"], to_tensor(lr))


def test_paired_folder_size_mismatch_names_the_file(tmp_path):
    _write(tmp_path / "HR" / "a.png", 16, 16)
    _write(tmp_path / "LR" / "a.png", 5, 4)
    with pytest.raises(UserError, match=r"LR[/\\]a.png.*5x4"):
        PairedFolder(tmp_path / "HR", tmp_path / "LR", scale=4)


def test_paired_folder_lists_unpaired_names(tmp_path):
    _write(tmp_path / "HR" / "a.png", 8, 8)
    _write(tmp_path / "HR" / "b.png", 8, 8)
    _write(tmp_path / "LR" / "a.png", 2, 2)
    _write(tmp_path / "LR" / "c.png", 2, 2)
    with pytest.raises(UserError, match=r"b.png \(no LR.*c.png \(no HR"):
        PairedFolder(tmp_path / "HR", tmp_path / "LR", scale=4)


def test_two_files_with_one_name_are_refused(tmp_path):
    _write(tmp_path / "HR" / "a.png", 8, 8)
    _write(tmp_path / "HR" / "a.jpg", 8, 8)
    with pytest.raises(UserError, match="two images named 'a'"):
        EvalFolder(tmp_path / "HR", 4, _degradation())


# ---------------------------------------------------------------------------- EvalFolder
def test_eval_folder_gtmod_and_per_image_determinism(tmp_path):
    hr = _write(tmp_path / "HR" / "x.png", 30, 25)
    _write(tmp_path / "HR" / "y.png", 16, 16)
    dataset = EvalFolder(tmp_path / "HR", 4, _degradation("bsrgan", 4), seed=1)
    sample = dataset[0]
    assert sample["name"] == "x" and sample["hr"].shape == (3, 28, 24)
    assert sample["lr"].shape == (3, 7, 6)
    assert torch.equal(sample["hr"], to_tensor(np.ascontiguousarray(hr[:28, :24])))
    # The draws depend on the image's name, not on its neighbours in the folder.
    (tmp_path / "HR" / "y.png").unlink()
    alone = EvalFolder(tmp_path / "HR", 4, _degradation("bsrgan", 4), seed=1)
    assert torch.equal(alone[0]["lr"], sample["lr"])
    other_seed = EvalFolder(tmp_path / "HR", 4, _degradation("bsrgan", 4), seed=2)
    assert not torch.equal(other_seed[0]["lr"], sample["lr"])


def test_scale_mismatch_between_dataset_and_degradation(tmp_path):
    _write(tmp_path / "x.png", 8, 8)
    with pytest.raises(ValueError, match="scale"):
        EvalFolder(tmp_path, 2, _degradation("bicubic", 4))



def test_the_tensor_dihedral_is_the_augmentations_and_undoes_itself():
    """Self-ensemble (torch, CHW) and the training augmentation (numpy, HWC) turn the same way."""
    image = np.random.default_rng(0).random((6, 6, 3))
    chw = torch.from_numpy(image.transpose(2, 0, 1).copy())
    for k, flip in datasets.DIHEDRAL:
        turned = datasets.dihedral_tensor(chw, k, flip)
        assert np.array_equal(turned.numpy().transpose(1, 2, 0), datasets.dihedral(image, k, flip))
        assert torch.equal(datasets.undo_dihedral_tensor(turned, k, flip), chw)
