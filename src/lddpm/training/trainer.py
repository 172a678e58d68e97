"""The training loop: G/D alternation, EMA, bf16 autocast, atomic checkpoints, exact resume.

Reproducibility: the data order and each sample's crop/augmentation/degradation come from
(seed, epoch, index); the diffusion noise, timesteps and dropout of step N come from a
generator seeded by (seed, N). So N steps straight and N/2 + kill + --resume N/2 give the
same weights.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from lddpm import checkpoint as ckpt
from lddpm.config import Config, inert_keys
from lddpm.diffusion.schedule import Schedule
from lddpm.errors import UserError, display_path
from lddpm.losses.objective import Objective
from lddpm.losses.perceptual import build_perceptual
from lddpm.models.build import build_discriminator, build_network
from lddpm.precision import autocast, resolve_device, resolve_precision
from lddpm.training.data import STEP_SEED_STRIDE, batch_iterator, training_set, validation_set
from lddpm.training.distributed import Distributed

IMAGE_KEYS = frozenset({"lr", "hr", "ref"})  # batch entries that are images ([0, 1] as loaded)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of step N's diffusion noise, timesteps and chain draws: seeded by (seed, N)."""
    return torch.Generator().manual_seed(seed * STEP_SEED_STRIDE + step)


# ------------------------------------------------------------------------------ pieces
@dataclass
class LRPlan:
    """The LR factor of every step: linear warm-up, then cosine decay to 0 at `total` (Table 1).

    Extending (or shortening) a run at step s moves `total` and makes the run join the
    cosine it would have followed had it been started with the new total: a linear `ramp`
    (start s, factor at s) over `warmup` steps from the current LR to that cosine, so the
    LR never jumps, and from s + warmup on it is exactly the new plan's cosine. Stored in
    the trainer state, so a resume with the same max_steps is exact.
    """

    warmup: int
    total: int
    ramp: tuple[int, float] | None = None  # (start step, LR factor at the start)

    def cosine(self, step: int) -> float:
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.ramp is not None:
            start, factor = self.ramp
            end = start + min(self.warmup, self.total - start)
            if step < end:
                return factor + (self.cosine(end) - factor) * (step - start) / (end - start)
        return self.cosine(step)

    def extended(self, step: int, total: int) -> LRPlan:
        """The plan of a run resumed at `step` with max_steps `total` (self if unchanged)."""
        if total == self.total:
            return self
        if step < self.warmup:  # the warm-up does not depend on the total: replan
            return LRPlan(self.warmup, total)
        return LRPlan(self.warmup, total, (step, self(step)))

    def state(self) -> list[float]:
        return [self.warmup, self.total, *(self.ramp or ())]

    @classmethod
    def from_state(cls, values: list[float]) -> LRPlan:
        warmup, total, *ramp = values
        return cls(int(warmup), int(total), (int(ramp[0]), float(ramp[1])) if ramp else None)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


# ------------------------------------------------------------------------------ trainer
class Trainer:
    def __init__(
        self,
        cfg: Config,
        data_dir: Path,
        output: Path,
        val_dir: Path | None = None,
        device: str = "cpu",
        resume: bool = False,
        progress: bool = True,
        init_from: Path | None = None,
        dist: Distributed | None = None,
    ):
        self.dist = dist or Distributed()  # torchrun ranks; lddpm.training.distributed
        self.cfg, self.output, self.progress = cfg, Path(output), progress and self.dist.is_main
        self.device = resolve_device(device)
        self.autocast_dtype = resolve_precision(cfg.train.precision, self.device)
        torch.manual_seed(cfg.train.seed)  # initial weights
        self.model = build_network(cfg).to(self.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.disc = build_discriminator(cfg)
        if self.disc is not None:
            self.disc.to(self.device)
        self.sched = Schedule.from_config(cfg.diffusion)
        self.objective = Objective(cfg, self.sched, self._perceptual())
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.train.lr, betas=(0.9, 0.999),
            weight_decay=cfg.train.weight_decay,
        )
        self.d_opt = None
        if self.disc is not None:
            self.d_opt = torch.optim.AdamW(self.disc.parameters(), lr=cfg.gan.d_lr, betas=(0.5, 0.9))
        self.lr_plan = LRPlan(cfg.train.warmup_steps, cfg.train.max_steps)
        self.lr_sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda step: self.lr_plan(step))
        self.step = 0
        if resume and ckpt.list_checkpoints(self.output):
            self._restore()
        elif init_from is not None:
            self._initialise_from(Path(init_from))
        elif resume:
            self._restore()
        self.g_loss, self.d_loss = self._loss_modules()
        self.dataset = training_set(cfg, data_dir, references=self.model.encoder is not None)
        self.val_set = validation_set(cfg, val_dir or data_dir)
        self.writer = None

    def _loss_modules(self) -> tuple[nn.Module, nn.Module | None]:
        """The G and D losses as modules: DDP-wrapped under torchrun (lddpm.training.distributed).
        The objective is looked up at each call, so a replaced objective takes effect."""
        def g(batch, gen, *args):
            return self.objective.generator_loss(self.model, batch, gen, *args)

        def d(batch, gen, *args):
            return self.objective.discriminator_loss(self.model, self.disc, batch, gen, *args)

        g_loss = self.dist.wrap(self.model, g)
        return g_loss, None if self.disc is None else self.dist.wrap(self.disc, d)

    def _perceptual(self) -> nn.Module | None:
        module = build_perceptual(self.cfg)
        return None if module is None else module.to(self.device)

    # ---------------------------------------------------------------- state
    def _trainer_state(self) -> dict:
        state = {
            "step": self.step,
            "optimizer": self.opt.state_dict(),
            "lr_schedule": self.lr_sched.state_dict(),
            "lr_plan": self.lr_plan.state(),
            "torch_rng": torch.get_rng_state(),  # nothing draws from NumPy's global RNG
        }
        if self.d_opt is not None:
            state["d_optimizer"] = self.d_opt.state_dict()
        return state

    def save(self) -> Path | None:
        if not self.dist.is_main:  # rank 0 writes for all
            return None
        return ckpt.save_checkpoint(
            self.output, self.step, self.cfg, self.model, self.ema, self._trainer_state(), self.disc
        )

    def _initialise_from(self, source: Path) -> None:
        """`--init-from`: the weights (EMA, or an export's) of another run into model and EMA,
        with a fresh optimiser and schedule (pre-train, then fine-tune). The source may have
        fewer parts (a V1 network grows into V2/V3 through the 1e-6 gates); the discriminator
        always starts fresh."""
        fresh = ckpt.grow_weights(self.model, source, self.cfg)
        self.ema.load_state_dict(self.model.state_dict())
        started = f"; new parts start fresh: {', '.join(fresh)}" if fresh else ""
        tqdm.write(f"lddpm: initialised from {display_path(source)} (fresh optimiser, step 0{started})")

    def _restore(self) -> None:
        found = ckpt.list_checkpoints(self.output)
        if not found:
            tqdm.write(f"lddpm: no checkpoint in {display_path(self.output)}: starting from step 0")
            return
        path = found[-1]
        saved = ckpt.read_config(path)
        ignore = ("train.max_steps", "train.val", "train.checkpoint_every", "train.log_every")
        diff = ckpt.config_differences(saved, self.cfg, ignore=ignore + inert_keys(self.cfg))
        if diff:
            raise UserError(f"{path} was trained with a different config: " + "; ".join(diff[:6]))
        ckpt.load_weights(self.model, path / ckpt.MODEL_FILE)
        ckpt.load_weights(self.ema, path / ckpt.EMA_FILE)
        if self.disc is not None:
            ckpt.load_weights(self.disc, path / ckpt.DISC_FILE)
        state = torch.load(path / ckpt.STATE_FILE, map_location=self.device, weights_only=True)
        self.opt.load_state_dict(state["optimizer"])
        self.lr_sched.load_state_dict(state["lr_schedule"])
        if self.d_opt is not None:
            self.d_opt.load_state_dict(state["d_optimizer"])
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location moved it to the device
        self.step = int(state["step"])
        self._restore_lr_plan(state, saved)
        tqdm.write(f"lddpm: resumed from {display_path(path)} at step {self.step}")

    def _restore_lr_plan(self, state: dict, saved: Config) -> None:
        """The saved plan (a state written before plans were stored: warm-up and cosine over
        the saved config's max_steps), extended to this run's max_steps."""
        if "lr_plan" in state:
            plan = LRPlan.from_state(state["lr_plan"])
        else:
            plan = LRPlan(saved.train.warmup_steps, saved.train.max_steps)
        self.lr_plan = plan.extended(self.step, self.cfg.train.max_steps)
        if self.lr_plan is not plan:
            tqdm.write(f"lddpm: max_steps {plan.total} -> {self.lr_plan.total}: the learning rate "
                       f"joins the new cosine over the next {self.cfg.train.warmup_steps} steps")

    # ---------------------------------------------------------------- loop
    def batches(self) -> Iterator[dict]:
        """The run's batches from the current step on (this rank's shard under torchrun)."""
        return batch_iterator(self.dataset, self.cfg, self.dist, self.step, self.device)

    def train_step(self, batch: dict) -> dict[str, float]:
        """One optimisation step on `batch` ({"lr": (B,3,h,w), "hr": (B,3,sh,sw)[, "ref"]} in
        [0, 1], as every dataset gives it, `HRFolder` here): D step (gan part), G step, LR
        schedule, EMA. Returns the logged scalars (loss terms, grad_norm, lr)."""
        gen = step_generator(self.cfg.train.seed, self.step)
        torch.manual_seed(self.dist.dropout_seed(self.cfg.train.seed * STEP_SEED_STRIDE + self.step))
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
        for key in IMAGE_KEYS.intersection(batch):
            batch[key] = batch[key] * 2 - 1  # the network's range, from here on (the losses too)
        logs: dict[str, float] = {}
        if self.disc is not None:
            logs.update(self._discriminator_step(batch, gen))
        self.model.train()
        if self.disc is not None:
            self.disc.requires_grad_(False)  # D is frozen during the G step
        refs = self._references(batch, gen)
        with autocast(self.device.type, self.autocast_dtype):
            total, terms = self.g_loss(batch, gen, self.disc, refs)
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.opt.step()
        self.lr_sched.step()
        self.step += 1
        decay = min(self.cfg.train.ema_decay, (1 + self.step) / (10 + self.step))
        ema_update(self.ema, self.model, decay)
        logs.update({k: float(v.detach()) for k, v in terms.items()})
        logs.update(loss=float(total.detach()), grad_norm=float(grad_norm), lr=self.lr_sched.get_last_lr()[0])
        return logs

    def _references(self, batch: dict, gen: torch.Generator) -> list[torch.Tensor] | None:
        """Trains Fig. 11's fusion: with probability data.reference_prob the batch's
        cross-attention also sees the "ref" views (other crops of the same photos)."""
        if "ref" not in batch:
            return None
        use = float(torch.rand((), generator=gen)) < self.cfg.data.reference_prob
        return [batch["ref"]] if use else None

    def _discriminator_step(self, batch: dict, gen: torch.Generator) -> dict[str, float]:
        assert self.disc is not None and self.d_opt is not None
        self.disc.requires_grad_(True)
        self.disc.train()
        with_r1 = self.cfg.gan.r1_weight > 0 and self.step % self.cfg.gan.r1_every == 0
        with autocast(self.device.type, self.autocast_dtype):
            total, terms = self.d_loss(batch, gen, with_r1)
        self.d_opt.zero_grad(set_to_none=True)
        total.backward()
        self.d_opt.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def fit(self, max_steps: int) -> Path:
        """Trains until step == max_steps (the run's total); returns the last checkpoint."""
        from lddpm.extras import summary_writer as SummaryWriter  # UserError: lddpm[train]

        self.writer = SummaryWriter(str(self.output / "tb")) if self.dist.is_main else None
        t = self.cfg.train
        bar = tqdm(total=max_steps, initial=self.step, desc="train", unit="step",
                   disable=not self.progress, dynamic_ncols=True)
        batches = self.batches()
        last = None
        started, self._first_step = time.time(), self.step
        try:
            while self.step < max_steps:
                logs = self.train_step(next(batches))
                bar.update(1)
                if self.step % t.log_every == 0 or self.step == max_steps:
                    self._log(logs, bar, started)
                if self.step % t.val_every == 0 or self.step == max_steps:
                    self.dist.on_main(self.validate)
                if self.step % t.checkpoint_every == 0 or self.step == max_steps:
                    self.dist.check_in_sync(self.model, self.ema, self.disc)
                    last = self.dist.on_main(self.save)
        except KeyboardInterrupt:
            last = self.save()
            bar.close()
            tqdm.write(f"lddpm: interrupted; saved {last} (continue with --resume)")
            raise
        bar.close()
        if self.writer is not None:
            self.writer.close()
        return last or self.save()

    def _log(self, logs: dict[str, float], bar: tqdm, started: float) -> None:
        logs = self.dist.mean(logs)  # every rank takes part; rank 0 reports
        if not self.dist.is_main:
            return
        for k, v in logs.items():
            self.writer.add_scalar(f"train/{k}", v, self.step)
        shown = {k: f"{v:.4f}" for k, v in logs.items() if k in ("loss", "ddpm", "kl", "adv", "d_adv", "content", "style")}
        bar.set_postfix(shown, refresh=False)
        if not self.progress:  # a log file instead of a bar: one line per log period
            rate = (self.step - self._first_step) / max(time.time() - started, 1e-9)
            items = " ".join(f"{k} {v}" for k, v in shown.items())
            print(f"step {self.step} {items} lr {logs['lr']:.2e} {rate:.2f} step/s", flush=True)

    # ---------------------------------------------------------------- validation
    def validate(self) -> float:
        """PSNR-Y of the EMA model on a few validation images; writes a PNG grid."""
        from lddpm.inference import Upscaler
        from lddpm.training.validation import validation_report

        upscaler = Upscaler(self.ema, self.cfg, self.device)
        psnr = validation_report(
            upscaler, self.val_set, self.cfg, self.output / "val" / f"step_{self.step:07d}.png"
        )
        if self.writer is not None:
            self.writer.add_scalar("val/psnr_y", psnr, self.step)
        tqdm.write(f"step {self.step}: validation PSNR-Y {psnr:.2f} dB")
        return psnr
