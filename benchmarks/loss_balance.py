"""Eq. 18's weights: how large each term's gradient is against L_DDPM's at lambda = 1.

Builds `small+v3+glow+gan` with the benchmark settings, takes one batch of benchmark photo
crops, and measures the norm of the gradient of each term (weight 1) with respect to the
denoiser's parameters, as a ratio to that of L_DDPM. The KL is measured both summed over
the latent (the paper's D_KL as written) and per latent dimension (lddpm's choice), at 64
and 128 px crops: the sum grows with the crop area, the mean does not.

    python benchmarks/loss_balance.py        # -> docs/loss_weights.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

from lddpm.config import apply_overrides, build_preset
from lddpm.data.datasets import HRFolder
from lddpm.data.pipeline import Degradation
from lddpm.diffusion.schedule import Schedule
from lddpm.losses.adversarial import g_loss
from lddpm.losses.objective import Objective
from lddpm.models.build import build_discriminator, build_network

SEEDS = (0, 1, 2)


def _grad_norm(loss: torch.Tensor, params: list[torch.Tensor]) -> float:
    grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    return float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))


def measure(crop: int, train_dir: Path) -> dict[str, float]:
    sets = [s for s in harness.COMMON_SETS if not s.startswith(("data.crop", "loss."))]
    cfg = apply_overrides(build_preset("small+v3+glow+gan"), [*sets, f"data.crop={crop}"])
    ratios: dict[str, list[float]] = {"kl (per dim)": [], "kl (sum)": [], "adv": []}
    for seed in SEEDS:
        torch.manual_seed(seed)
        net, disc = build_network(cfg), build_discriminator(cfg)
        obj = Objective(cfg, Schedule.from_config(cfg.diffusion))
        data = HRFolder(train_dir, cfg.data.scale, crop, Degradation(cfg.data), seed=seed)
        batch = {k: torch.stack([data[i][k] for i in range(8)]) * 2 - 1 for k in ("hr", "lr")}  # the net's range
        gen = torch.Generator().manual_seed(seed)
        cond = net.condition(batch["lr"])
        x0 = obj.param.x0_from_image(batch["hr"], cond.up)
        raw, _, _ = obj.ddpm_terms(net, x0, cond, gen)
        pair = obj.chain_pair(net, x0, cond, gen)
        adv = g_loss(disc(pair.x_prev_fake, pair.x_t, pair.t, cond.up).float())
        params = [p for p in net.parameters() if p.requires_grad]
        base = _grad_norm(raw["ddpm"], params)
        latent = net.latent_shape(tuple(batch["hr"].shape))
        dims = latent[1] * latent[2] * latent[3]
        ratios["kl (per dim)"].append(_grad_norm(raw["kl"], params) / base)
        ratios["kl (sum)"].append(_grad_norm(raw["kl"] * dims, params) / base)
        ratios["adv"].append(_grad_norm(adv, params) / base)
    return {k: sum(v) / len(v) for k, v in ratios.items()}


def main() -> None:
    torch.set_num_threads(1)
    train_dir, _ = harness.prepare_data()
    rows = []
    for crop in (64, 128):
        r = measure(crop, train_dir)
        rows.append([f"{crop} px", *(harness.fmt(r[k], 3) for k in ("kl (per dim)", "kl (sum)", "adv"))])
    harness.write_report(
        harness.DOCS / "loss_weights.md", "Eq. 18's weights: gradient of each term against L_DDPM",
        [("Norm of the gradient of each term (weight 1) with respect to the denoiser's "
         "parameters, divided by that of L_DDPM; `small+v3+glow+gan` with the benchmark "
         f"settings at initialisation (D untrained), one batch of 8 photo crops, mean of "
         f"{len(SEEDS)} seeds."),
         harness.table(["crop", "KL per latent dim", "KL summed (paper as written)", "L_adv"], rows),
         ("What lddpm does with Eq. 18 (all lambda = 1 in the paper): `loss.adv` = 1, as the "
         "paper (the adversarial gradient is already a few percent of L_DDPM's at weight 1; "
         "the earlier 0.1 made it a few tenths of a percent). `loss.kl` = 1 on the KL *per "
         "latent dimension*, not the sum the paper writes: the summed KL's gradient is "
         "hundreds of times L_DDPM's and grows with the crop area (the latent has H/f x W/f "
         "positions), so its balance would depend on the crop size; per dimension it is of "
         "the order of L_DDPM's at any size. `train.weight_decay` = 0.01 with AdamW by default "
         "(Table 1 names AdamW without a value; 0.01 is PyTorch's AdamW default), so it is not "
         "plain Adam; the `photo` size, and so the shipped model, sets 0.0.")],
        {}, {},
    )


if __name__ == "__main__":
    main()
