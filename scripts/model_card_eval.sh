#!/usr/bin/env bash
# Every figure of docs/model_card.md, from the shipped default model (run from the checkout root
# after `make test` or `make demo` made .venv). Writes under ${OUT:-runs/model_card}.
#   held-out test split: 20 videos x 32 frames at 256x256, seed 7 (training seeds are >= 1,000,003)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/model_card}
MQC=".venv/bin/mqc-edge"
$MQC data synth --out "$OUT/test" --videos 20 --frames 32 --size 256x256 --seed 7
$MQC data synth --out "$OUT/test-degraded" --videos 20 --frames 32 --size 256x256 --seed 7 --degrade
for split in test test-degraded; do
    $MQC eval --model default --gt "$OUT/$split" --out "$OUT/eval-$split" --threads 2 \
        --variants mqc sam2-box flow-gt-mask sam2-text mqc-no-tmcc
done
# export parity on trained weights: onnxruntime vs the torch reference, both modes, every frame
$MQC eval --model default --gt "$OUT/test" --out "$OUT/parity" --threads 2
$MQC bench default --out "$OUT/bench" --modes mqc sam2 --clip-size 256 --frames 24 --threads 2
