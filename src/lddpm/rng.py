"""Random draws that give the same numbers whatever device the result lives on.

Every random choice in lddpm takes an explicit `torch.Generator`, and those generators live
on the CPU (seeded per step or per sample). CUDA refuses a CPU generator
("Expected a 'cuda' device type for generator"), and a CUDA generator would give other
numbers than the CPU one for the same seed. So noise is drawn on the generator's device and
then moved: `--seed 3` gives the same image on the CPU whatever `--device` says.
"""

from __future__ import annotations

import torch


def randn(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """N(0, I) of `shape`, drawn on `generator.device` (or `device` without a generator),
    returned on `device`."""
    where = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=where, dtype=dtype).to(device)
