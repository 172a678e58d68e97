"""Table 7 at the shipped recipe: v3 vs v3 + Glow prior vs v3 + Glow + GAN, all sampled in 4
steps (ddim, and the GAN's own lddpm chain), each fine-tuned from the shipped model for the
same number of steps.

    python benchmarks/ablation_glow_gan.py [--steps N] [--sampler-steps 4] [--out DIR] [--runs DIR]

Rows: `photo+res+v3+detail`, `+v3+glow+detail`, `+v3+glow+gan+detail`, each trained by
`lddpm train --init-from lddpm-x4` for --steps steps with every recipe key of
harness.TABLE_RECIPE set explicitly; plus the start itself, not fine-tuned. Every row samples
ddim-K; the GAN row also samples its trained K-step chain (lddpm-K, K = 4: only a model
trained with the gan part has one). One `lddpm evaluate --compare` on the report photos
(benchmarks/photo_sets.py), two samples per image. Writes OUT/ablation_glow_gan.md
(+ .json/.csv beside it; OUT defaults to docs/).
"""

from __future__ import annotations

import argparse

from harness import (
    TABLE_START,
    effects_paragraphs,
    evaluation_note,
    fmt,
    parameters,
    part_effects,
    recipe_note,
    table,
    table_columns,
    table_compare,
    table_parse,
    table_run,
    table_train,
    write_report,
)

ROWS = [
    ("V3", "photo+res+v3+detail"),
    ("V3 + Glow prior (Eq. 12)", "photo+res+v3+glow+detail"),
    ("V3 + Glow + GAN (Eq. 13-15)", "photo+res+v3+glow+gan+detail"),
]
# About an hour for the table on 2 cores, evaluation included: 3 rows x STEPS steps at
# 0.70 (v3), 0.71 (+ glow) and 1.66 (+ glow + gan) s/step, measured as CPU seconds per step
# of a 5-step run with one thread (each job with a core of its own; README, Benchmarks).
STEPS = 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = table_parse(ap, STEPS)
    runs = [table_run(name, preset, args.steps, args.runs) for name, preset in ROWS]
    gan = runs[-1]
    seconds = {r.name: table_train(r, args.steps) for r in runs}
    k, c = args.sampler_steps, args.consistency
    spec = [(f"start: {TABLE_START}, not fine-tuned", TABLE_START, f"ddim-{k}", f"{TABLE_START}:ddim:{k}:{c}")]
    spec += [(r.name, r, f"ddim-{k}", f"{r.dir}:ddim:{k}:{c}") for r in runs]
    spec.append((gan.name, gan, "lddpm (trained K)", f"{gan.dir}:lddpm:{c}"))
    report, means = table_compare([e for *_, e in spec], args.out / "ablation_glow_gan.json", args)
    columns = table_columns(means)
    rows = [["bicubic", "-", *[fmt(means[0].get(n), d) for n, d, _ in columns], "-"]]
    for (label, run, sampler, _), m in zip(spec, means[1:]):
        params = f"{parameters(run) / 1e6:.2f}M" if run is not TABLE_START else "-"
        rows.append([label, sampler, *[fmt(m.get(n), d) for n, d, _ in columns], params])
    bic, _start, m_v3, m_glow, m_gan_ddim, m_gan_chain = means
    effects = part_effects([
        ("+ Glow prior (against V3, ddim)", m_glow, m_v3),
        ("+ GAN, sampled ddim (against V3 + Glow, ddim)", m_gan_ddim, m_glow),
        ("+ GAN, sampled by its chain (against V3 + Glow, ddim)", m_gan_chain, m_glow),
        ("the trained chain against ddim, same GAN model", m_gan_chain, m_gan_ddim),
        ("V3 + Glow + GAN (chain) against bicubic", m_gan_chain, bic),
    ], columns)
    write_report(args.out / "ablation_glow_gan.md",
                 "Ablation: Glow prior and adversarial few-step denoising (the paper's Table 7, "
                 "at the shipped recipe)", [
        recipe_note(args.steps, runs, seconds),
        ("The GAN row trains a discriminator beside the denoiser (its steps cost more; the "
         "budget is equal in steps); parameters count the denoiser only."),
        evaluation_note(report, args, f"ddim-{k} for every row and the GAN's own chain"),
        table(["model", "sampler", *[n for n, _, _ in columns], "params"], rows),
        *effects_paragraphs(effects),
    ], {}, report)


if __name__ == "__main__":
    main()
