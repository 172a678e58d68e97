"""Every loss of the training objective, in one home apart from the networks (as BasicSR
keeps `losses/`); the networks in `lddpm.models` compute outputs and densities only.

    perceptual.py   content (Eq. 16) and style (Eq. 17) on a frozen backbone, their time
                    weighting, and `build_perceptual` (the loss module a config asks for)
    adversarial.py  the non-saturating GAN losses of Eq. 13 and the R1 penalty
    kl.py           the CVAE latent's KL: closed form to N(0, I) (Eq. 11), one-sample estimate
                    to the Glow prior (Eq. 12), per latent dimension
    objective.py    Eq. 18: L_DDPM (Eq. 7), the K-step chain (Eq. 14-15), and the composite
                    that weighs every term (`Objective`)

Layering: above `lddpm.models` and `lddpm.diffusion` (the objective combines the networks'
outputs under the diffusion's parameterisation), beside `lddpm.inference`, which needs none
of it; `lddpm.training` uses it.
"""
