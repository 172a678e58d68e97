#!/usr/bin/env bash
# Ships the newest checkpoint of runs/NAME as the package's model src/lddpm/pretrained/NAME
# (EMA weights in bf16 + config.json with the sampling defaults and what the model is for).
#
#   bash scripts/ship_model.sh lddpm-x4-detail
#   SAMPLER=ddim STEPS=2 CONSISTENCY=end bash scripts/ship_model.sh lddpm-x4
#
# The defaults are the settings the benchmarks chose on the choosing set (bench_runs/data/val):
# docs/default_model.md (lddpm-x4), docs/paper_model.md (lddpm-x4-detail),
# docs/real_world.md (lddpm-x4-real); re-run the model's benchmark after shipping.
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:?usage: scripts/ship_model.sh lddpm-x4|lddpm-x4-detail|lddpm-x4-real}
RUN=${RUN:-runs/$NAME}
BLEND=()
case "$NAME" in
    lddpm-x4)
        DEFAULTS=(ddim 1 end)
        ABOUT="clean downscaled images (a resize, a thumbnail, a web preview of a sharp photo): the highest PSNR/SSIM, smooth textures; for camera/web photos with blur, noise or JPEG use lddpm-x4-real" ;;
    lddpm-x4-detail)
        DEFAULTS=(lddpm 4 step)
        ABOUT="clean downscaled images where texture matters more than PSNR: the paper's model (encoder, CVAE, Glow, GAN chain, content/style losses) sampled in 4 steps, a different plausible texture per seed" ;;
    lddpm-x4-real)
        DEFAULTS=(ddim 1 none)
        # The run's weights interpolated with those it was fine-tuned from (the shipped
        # model): 0.35 of the shipped, BSRGAN-only weights keeps more of the degraded-LR
        # gain, 0.65 of the run (30% clean LR) the clean-LR gain (docs/real_blend.md)
        BLEND=(--interpolate "${BLEND_WITH:-lddpm-x4-real}" --interpolate-weight "${BLEND_WEIGHT:-0.35}")
        ABOUT="camera, phone, chat-app and web photos (blur, sensor noise, JPEG), and clean downscales: trained on BSRGAN degradations with 30% clean LR, no LR consistency (the LR's noise and blocks are not copied into the output)" ;;
    *) echo "unknown model $NAME (lddpm-x4, lddpm-x4-detail, lddpm-x4-real)" >&2; exit 2 ;;
esac
exec .venv/bin/lddpm export "$RUN" "src/lddpm/pretrained/$NAME" --dtype bf16 \
    --sampler "${SAMPLER:-${DEFAULTS[0]}}" --steps "${STEPS:-${DEFAULTS[1]}}" \
    --consistency "${CONSISTENCY:-${DEFAULTS[2]}}" --description "$ABOUT" --overwrite "${BLEND[@]}"
