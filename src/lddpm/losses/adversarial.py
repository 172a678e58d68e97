"""The adversarial losses of Eq. 13 and the R1 penalty (the network: lddpm.models.discriminator).

Eq. 13 writes the loss with D as a probability; with logits l = D(.) and sigmoid(l) as that
probability, -log(sigmoid(l)) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Eq. 13 discriminator loss: E[-log D(real)] + E[-log(1 - D(fake))], non-saturating form.

    = mean softplus(-real) + mean softplus(fake); both logits 0 -> 2 log 2.
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss E[-log D(fake)] = mean softplus(-fake); logits 0 -> log 2."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: Tensor, real_inputs: Tensor) -> Tensor:
    """R1 = mean over the batch of ||d real_logits / d x_prev||^2 (DDGAN applies it to x_prev).

    real_inputs must be the x_prev tensor given to D, with requires_grad set. The graph is
    kept (create_graph=True) so the penalty back-propagates into D's parameters. The trainer
    scales it (gamma / 2 * R1 in DDGAN) and may apply it lazily every N steps.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return grad.pow(2).flatten(1).sum(dim=1).mean()
