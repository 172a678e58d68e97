#!/usr/bin/env bash
# Trains, or continues, one of the models shipped in the package, on real photos.
#
#   bash scripts/train_model.sh lddpm-x4          # photo+res, clean MATLAB-bicubic LR
#   bash scripts/train_model.sh lddpm-x4-detail   # the paper's model: photo+res+lddpm+detail
#   bash scripts/train_model.sh lddpm-x4-real     # photo+res on BSRGAN degradations
#   STEPS=60000 bash scripts/train_model.sh lddpm-x4       # extend the same run
#   nohup bash scripts/train_model.sh lddpm-x4-detail > runs/lddpm-x4-detail.log 2>&1 &
#   STEPS=4000 bash scripts/train_model.sh lddpm-x4-real --device cuda \
#       --set data.batch_size=64 --set data.workers=8    # on a GPU (README: lddpm-x4-real)
#
# The run is runs/NAME; re-running resumes it from its newest checkpoint (atomic). A new
# run starts from shipped weights (--init-from): the model's own when the package has it,
# so each session fine-tunes what the last one shipped, else lddpm-x4 (the new parts of
# the detail model start at their 1e-6 gates). Extra arguments go to `lddpm train`.
# Ship the result with `bash scripts/ship_model.sh NAME`.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:?usage: scripts/train_model.sh lddpm-x4|lddpm-x4-detail|lddpm-x4-real [lddpm train options]}
shift
PY=${PY:-.venv/bin/python}
RUN=${RUN:-runs/$NAME}
case "$NAME" in
    lddpm-x4)
        STEPS=${STEPS:-30000}
        ARGS=(--preset photo+res) ;;
    lddpm-x4-detail)
        # MobileNetV2: the ImageNet backbone this machine has (VGG-19's file is not on PyPI)
        STEPS=${STEPS:-6000}
        ARGS=(--preset photo+res+lddpm+detail --set loss.backbone=mobilenet_v2
              --set train.lr=1e-4 --set data.batch_size=8 --set train.checkpoint_every=100) ;;
    lddpm-x4-real)
        STEPS=${STEPS:-20000}
        # 30% of the samples keep the clean bicubic LR: a downscaled sharp photo is an input too
        ARGS=(--preset photo+res --set data.degradation=bsrgan --set data.bsrgan.clean_prob=0.3
              --set train.checkpoint_every=100) ;;
    *) echo "unknown model $NAME (lddpm-x4, lddpm-x4-detail, lddpm-x4-real)" >&2; exit 2 ;;
esac
"$PY" benchmarks/prepare_photos.py
INIT=()
if [ ! -d "$RUN/checkpoints" ]; then
    for start in "$NAME" lddpm-x4; do
        if "$PY" -c "import sys; from lddpm.pretrained import shipped_models as s; sys.exit('$start' not in s())"; then
            INIT=(--init-from "$start"); break
        fi
    done
fi
exec "$PY" -m lddpm train "${ARGS[@]}" --data bench_runs/photos \
    --val-data bench_runs/data/val --output "$RUN" --max-steps "$STEPS" --resume \
    --no-progress "${INIT[@]}" "$@"
