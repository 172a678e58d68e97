"""Table 6 at the shipped recipe: v1 (SR3 stacking) vs v2 (+ LR encoder cross-attention) vs
v3 (+ CVAE), each fine-tuned from the shipped model for the same number of steps.

    python benchmarks/ablation_conditioning.py [--steps N] [--sampler-steps 4] [--out DIR] [--runs DIR]

Rows: `photo+res+v1+detail`, `+v2+detail`, `+v3+detail` (the `detail` part sets what the
paper model's recipe needs; for v1/v2 it changes nothing that they use), each trained by
`lddpm train --init-from lddpm-x4` (the v1 network grows the v2/v3 parts at their 1e-6
gates) for --steps steps with every recipe key of harness.TABLE_RECIPE set explicitly; plus
the start itself, not fine-tuned, as a reference. All rows sample ddim-K in one
`lddpm evaluate --compare` on the report photos (benchmarks/photo_sets.py), two samples per
image. Writes OUT/ablation_conditioning.md (+ .json/.csv beside it; OUT defaults to docs/).
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
    ("V1 (SR3 stacking)", "photo+res+v1+detail"),
    ("V2 (+ cross-attention, Eq. 8)", "photo+res+v2+detail"),
    ("V3 (+ CVAE, Eq. 9-11)", "photo+res+v3+detail"),
]
# About an hour for the table on 2 cores, evaluation included: 3 rows x STEPS steps at
# 0.44 (v1), 0.55 (v2) and 0.70 (v3) s/step, measured as CPU seconds per step of a 5-step
# run with one thread (each job with a core of its own; README, Benchmarks).
STEPS = 2000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = table_parse(ap, STEPS)
    runs = [table_run(name, preset, args.steps, args.runs) for name, preset in ROWS]
    seconds = {r.name: table_train(r, args.steps) for r in runs}
    k, c = args.sampler_steps, args.consistency
    entries = [f"{TABLE_START}:ddim:{k}:{c}"] + [f"{r.dir}:ddim:{k}:{c}" for r in runs]
    report, means = table_compare(entries, args.out / "ablation_conditioning.json", args)
    columns = table_columns(means)
    labels = ["bicubic", f"start: {TABLE_START}, not fine-tuned"] + [r.name for r in runs]
    params = ["-", "-"] + [f"{parameters(r) / 1e6:.2f}M" for r in runs]
    rows = [[label, *[fmt(m.get(n), d) for n, d, _ in columns], p]
            for label, m, p in zip(labels, means, params)]
    bic, start, v1, v2, v3 = means
    effects = part_effects([
        ("fine-tuning alone (V1 against the start)", v1, start),
        ("+ cross-attention (V2 against V1)", v2, v1),
        ("+ CVAE (V3 against V2)", v3, v2),
        ("V3 against bicubic", v3, bic),
    ], columns)
    write_report(args.out / "ablation_conditioning.md",
                 "Ablation: conditioning (the paper's Table 6, at the shipped recipe)", [
        recipe_note(args.steps, runs, seconds),
        evaluation_note(report, args, f"ddim-{k} for every row"),
        table(["model", *[n for n, _, _ in columns], "params"], rows),
        *effects_paragraphs(effects),
    ], {}, report)


if __name__ == "__main__":
    main()
