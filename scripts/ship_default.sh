#!/usr/bin/env bash
# Ships the newest checkpoint of the default run as the package's model:
# src/lddpm/pretrained/lddpm-x4 (EMA weights in bf16 + config.json with sampling defaults).
#
#   bash scripts/ship_default.sh                     # defaults: ddim, 1 step, consistency end
#   SAMPLER=ddim STEPS=2 CONSISTENCY=end bash scripts/ship_default.sh
#
# The defaults are the best-PSNR setting that `python benchmarks/default_model.py` measures
# (docs/default_model.md); re-run that benchmark after shipping.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/default}
exec .venv/bin/lddpm export "$RUN" src/lddpm/pretrained/lddpm-x4 --dtype bf16 \
    --sampler "${SAMPLER:-ddim}" --steps "${STEPS:-1}" --consistency "${CONSISTENCY:-end}" --overwrite
