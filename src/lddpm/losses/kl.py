"""The KL terms of the CVAE latent z (Eq. 11-12), from the posterior a training pass drew.

    kl = latent_kl(net.prior, posterior)    # (B,), per latent dimension
    posterior: what `LDDPMNet.forward_train` returns beside its output (z, mu_q, logvar_q,
               and the prior's condition), all (B, Cz, h, w) but the condition

Without Glow the prior is N(0, I) and the KL is Eq. 11 in closed form; with the Glow prior
it is the one-sample estimate log q(z | x) - log p(z | c) of Eq. 12 (p's density is the
network's: `GlowPrior.log_prob`). Either is divided by the number of latent dimensions, so
`loss.kl` means the same at any crop size (docs/loss_weights.md: summed, the KL's gradient is
hundreds of times L_DDPM's and grows with the crop area).
"""

from __future__ import annotations

from torch import Tensor

from lddpm.models.flow import GlowPrior, gaussian_log_prob
from lddpm.models.lddpm import Posterior


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """Eq. 11 in closed form: KL(N(mu, sigma^2) || N(0, I)), summed per sample -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(dim=1)


def kl_glow_prior(
    prior: GlowPrior,
    z: Tensor,
    mu_q: Tensor,
    logvar_q: Tensor,
    context: Tensor,
    lr_feat: Tensor | None = None,
) -> Tensor:
    """Eq. 12's KL as a one-sample estimate log q(z | x) - log p(z | c), summed per sample -> (B,).

    z is the reparameterised posterior sample, q = N(mu_q, exp(logvar_q)) (all (B, C, h, w));
    context and lr_feat condition the prior as in `GlowPrior.log_prob`.
    """
    log_q = gaussian_log_prob(z, mu_q, 0.5 * logvar_q)
    return log_q - prior.log_prob(z, context, lr_feat)


def latent_kl(prior: GlowPrior | None, posterior: Posterior) -> Tensor:
    """The KL of a training pass's latent per latent dimension (B,): to N(0, I) without a
    Glow prior (Eq. 11), else to the Glow prior (Eq. 12, one sample)."""
    p = posterior
    if prior is None:
        kl = kl_standard_normal(p.mu, p.logvar)
    else:
        kl = kl_glow_prior(prior, p.z, p.mu, p.logvar, p.context, p.lr_feat)
    return kl / p.mu[0].numel()
