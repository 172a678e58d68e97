#!/usr/bin/env bash
# GPU smoke test of training, in under 10 minutes on any CUDA machine:
#   1. small+lddpm for STEPS steps on 1 GPU (batch 16), then on all GPUs under torchrun
#      (nccl, 16 per GPU), bf16 autocast where the GPU has it (train.precision=auto);
#   2. every logged loss is finite; img/s of both runs (steps 50..STEPS, from the log);
#   3. the all-GPU checkpoint samples on the GPU and upscales on the CPU in one process.
#
#   bash benchmarks/gpu_smoke.sh [STEPS]        # PYTHON=... to use another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
STEPS=${1:-200}
OUT=bench_runs/gpu_smoke
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$NGPU" -lt 1 ]; then echo "gpu_smoke: no CUDA device visible" >&2; exit 2; fi
rm -rf "$OUT" && mkdir -p "$OUT"
"$PY" -c "import torch; print('gpu_smoke:', torch.__version__, '|', $NGPU, 'x', torch.cuda.get_device_name(0), '| bf16:', torch.cuda.is_bf16_supported())"

# The content/style losses need VGG weights; without them the smoke run trains the rest of
# small+lddpm (v3+glow+gan) and says so, rather than failing on a missing download.
PERCEPTUAL=()
if ! "$PY" -c "from lddpm.config import build_preset; from lddpm.losses.perceptual import PerceptualLoss; PerceptualLoss(build_preset('small+lddpm').loss)" 2>/dev/null; then
  echo "gpu_smoke: no VGG weights found: training without the content/style losses"
  PERCEPTUAL=(--set loss.content=0 --set loss.style=0)
fi
SETS=(--set data.crop=64 --set data.workers=4 --set train.log_every=50 --set train.val_every=100000
      --set train.checkpoint_every=100000 --set train.val_images=1 --set train.val_steps=4 "${PERCEPTUAL[@]}")

train() {  # name, global batch, launcher...
  local name=$1 batch=$2; shift 2
  "$@" -m lddpm train --preset small+lddpm --data examples --output "$OUT/$name" --max-steps "$STEPS" \
    --device cuda --no-progress "${SETS[@]}" --set data.batch_size="$batch" 2>&1 | tee "$OUT/$name.log"
}

rate() {  # name, global batch: img/s between the log lines of step 50 and step STEPS
  "$PY" - "$OUT/$1.log" "$2" "$STEPS" <<'EOF'
import math, re, sys
log, batch, steps = open(sys.argv[1]).read(), int(sys.argv[2]), int(sys.argv[3])
lines = {int(m[1]): m[2] for m in re.finditer(r"^step (\d+) (.*)$", log, re.M) if "step/s" in m[2]}
values = [float(v) for text in lines.values() for v in re.findall(r"loss (\S+)", text)]
assert values and all(math.isfinite(v) for v in values), f"{sys.argv[1]}: non-finite or no loss"
cumulative = {s: float(t.split()[-2]) for s, t in lines.items()}  # steps/s since the start
elapsed = lambda s: s / cumulative[s]
print(f"{batch * (steps - 50) / (elapsed(steps) - elapsed(50)):.1f}")
EOF
}

START=$(date +%s)
train one 16 "$PY"
train all $((16 * NGPU)) "$PY" -m torch.distributed.run --standalone --nproc_per_node "$NGPU"
ONE=$(rate one 16)
ALL=$(rate all $((16 * NGPU)))

"$PY" -m lddpm upscale examples/chelsea.png --checkpoint "$OUT/all" --output "$OUT/sr_gpu.png" \
  --sampler lddpm --device cuda --overwrite
"$PY" -m lddpm upscale examples/chelsea.png --checkpoint "$OUT/all" --output "$OUT/sr_cpu.png" \
  --sampler lddpm --device cpu --overwrite
"$PY" - "$OUT" <<'EOF'
import sys
import numpy as np
from PIL import Image
a, b = (np.asarray(Image.open(f"{sys.argv[1]}/sr_{d}.png"), dtype=np.float64) for d in ("gpu", "cpu"))
assert a.shape == b.shape, (a.shape, b.shape)
print(f"gpu_smoke: checkpoint upscales on GPU and CPU, {a.shape[1]}x{a.shape[0]}, "
      f"mean |GPU - CPU| {np.abs(a - b).mean():.2f} / 255 (bf16 on the GPU, fp32 on the CPU)")
EOF
echo "gpu_smoke: small+lddpm, 64 px crops, $STEPS steps: 1 GPU $ONE img/s (batch 16); $NGPU GPU(s) $ALL img/s (batch $((16 * NGPU)))"
echo "gpu_smoke: passed in $(( $(date +%s) - START )) s"
