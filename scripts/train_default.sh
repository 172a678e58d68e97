#!/usr/bin/env bash
# Trains, or continues, the default x4 model (preset photo+res) on real photos.
#
#   bash scripts/train_default.sh                 # runs/default, up to STEPS total steps
#   STEPS=60000 bash scripts/train_default.sh     # extend the same run
#   nohup bash scripts/train_default.sh > runs/default.log 2>&1 &
#
# Re-running resumes the run from its newest checkpoint (atomic, every 250 steps). A new run
# starts from the shipped model's weights (--init-from lddpm-x4) when the package has one,
# so each session fine-tunes what the last one shipped. Ship the result with
# `bash scripts/ship_default.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${STEPS:-30000}
RUN=${RUN:-runs/default}
PY=${PY:-.venv/bin/python}
"$PY" benchmarks/prepare_photos.py
INIT=()
if [ ! -d "$RUN/checkpoints" ] && "$PY" -c "from lddpm.pretrained import shipped_models as s; exit('lddpm-x4' not in s())"; then
    INIT=(--init-from lddpm-x4)
fi
exec "$PY" -m lddpm train --preset photo+res --data bench_runs/photos \
    --val-data bench_runs/data/val --output "$RUN" --max-steps "$STEPS" --resume \
    --no-progress "${INIT[@]}" "$@"
