#!/usr/bin/env bash
# The GPU fine-tuning behind the shipped lddpm-x4-real (README: lddpm-x4-real), two runs
# side by side on one GPU, each from the shipped lddpm-x4-real, on BSRGAN LR with 30% clean LR:
#   A  photo+res (the shipped recipe), batch 64, lr 2e-4           -> OUTDIR/A (shipped, blended)
#   B  photo+res+lddpm+detail (the paper's parts, grown), batch 32 -> OUTDIR/B (measured, not shipped)
# Phase 1 measures each run's step rate for PROBE_S seconds; phase 2 resumes with the total
# that ends TRAIN_S seconds after the start, so the cosine learning rate reaches 0 in the time
# there is. TA=... TB=... give the totals instead (no probe). Then both are exported (bf16).
#
#   bash scripts/train_real_gpu.sh                    # TRAIN_S=420 s of training, then the exports
#   TA=4000 TB=1000 bash scripts/train_real_gpu.sh    # the shipped run's totals (about 8 min on one H200)
#   RUN=runs/gpu/A bash scripts/ship_model.sh lddpm-x4-real
#
# DATA/VAL: the training and validation photos (benchmarks/prepare_photos.py writes both; the
# shipped run read them as JPEG q95 copies to fit the GPU machine's upload); MOBILENET: the
# MobileNetV2 file for B's perceptual losses when the package that ships it is not installed.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python3}; DEV=${DEV:-cuda}; OUTDIR=${OUTDIR:-runs/gpu}
DATA=${DATA:-bench_runs/photos}; VAL=${VAL:-bench_runs/data/val}
TRAIN_S=${TRAIN_S:-420}; PROBE_S=${PROBE_S:-90}
BA=${BA:-64}; BB=${BB:-32}; WA=${WA:-8}; WB=${WB:-6}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
mkdir -p "$OUTDIR"
MOBILE=(); [ -n "${MOBILENET:-}" ] && MOBILE=(--set "loss.mobilenet_weights=$MOBILENET")
COMMON=(--data "$DATA" --val-data "$VAL" --device "$DEV" --resume --no-progress
        --set data.degradation=bsrgan --set data.bsrgan.clean_prob=0.3
        --set train.checkpoint_every=100 --init-from lddpm-x4-real)
# exec: the background job is the trainer itself, so the probe's TERM reaches it
run_a() { exec $PY -m lddpm train --preset photo+res "${COMMON[@]}" --output "$OUTDIR/runA" \
    --set data.batch_size="$BA" --set data.workers="$WA" --set train.lr=2e-4 \
    --max-steps "$1" >> "$OUTDIR/A.log" 2>&1; }
run_b() { exec $PY -m lddpm train --preset photo+res+lddpm+detail --set loss.backbone=mobilenet_v2 \
    "${MOBILE[@]}" "${COMMON[@]}" --output "$OUTDIR/runB" --set data.batch_size="$BB" \
    --set data.workers="$WB" --set train.lr=1e-4 --max-steps "$1" >> "$OUTDIR/B.log" 2>&1; }
last_step() { grep -o '^step [0-9]*' "$1" | tail -1 | cut -d' ' -f2; }

start=$(date +%s)
if [ -z "${TA:-}" ]; then
    run_a 100000 & PA=$!
    run_b 100000 & PB=$!
    sleep "$PROBE_S"
    kill -TERM $PA $PB 2>/dev/null; wait $PA $PB 2>/dev/null
    now=$(date +%s); left=$(( start + TRAIN_S - now ))
    for r in A B; do
        s=$(last_step "$OUTDIR/$r.log") || { echo "run $r made no step:"; cat "$OUTDIR/$r.log"; exit 1; }
        [ -n "$s" ] || { echo "run $r made no step:"; cat "$OUTDIR/$r.log"; exit 1; }
        eval "T$r=$(( s + s * left / (now - start) ))"  # the probe's rate (start-up included)
    done
fi
echo "max-steps: A $TA, B $TB" | tee -a "$OUTDIR/plan.txt"
run_a "$TA" & PA=$!
run_b "$TB" & PB=$!
wait $PA; echo "A rc $?"; wait $PB; echo "B rc $?"
for r in A B; do
    $PY -m lddpm export "$OUTDIR/run$r" "$OUTDIR/$r" --dtype bf16 --sampler ddim --steps 1 \
        --consistency none --overwrite
done
