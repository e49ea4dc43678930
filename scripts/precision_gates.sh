#!/usr/bin/env bash
# Every gate figure of docs/precision.md's "The shipped default, measured" tables, from the shipped
# default model (run from the checkout root after `make test` or `make demo` made .venv).
# Writes under ${OUT:-runs/precision}; the summary tables go to $OUT/gates.md.
#   gate clips: 4 x 16 frames, seed 700001; calibration clips (static INT8): 2 x 8 frames, seed 800001
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/precision}
MQC=".venv/bin/mqc-edge"
THREADS=${THREADS:-2}
BF16_PLAN="memory_attention dami_attention memory_encoder prompt_encoder prompt_fusion text_encoder quality_head uncertainty_head no_memory"
# the default's FP16 plan: memory attention, DAMI attention, mask decoder and text encoder FP32 (default_model.py)
FP16_PLAN=$(.venv/bin/python -c "from mqc_edge.default_model import DEFAULT_FP16_STAGES; print(*DEFAULT_FP16_STAGES)")
mkdir -p "$OUT"
build() {  # name, then `mqc-edge build` options; a build outside its gate (exit 2) still leaves its report
    local name=$1; shift
    rm -rf "${OUT:?}/$name"
    local start=$SECONDS status=0
    $MQC build default "$@" --threads "$THREADS" --out "$OUT/$name" || status=$?
    [ "$status" -le 2 ] || exit "$status"
    echo "$name: exit $status, $((SECONDS - start)) s" | tee -a "$OUT/build_times.txt"
}
: > "$OUT/build_times.txt"
build fp16 --precision fp16
build fp16-plan --precision fp16 --stages $FP16_PLAN
build bf16 --precision bf16
build bf16-plan --precision bf16 --stages $BF16_PLAN
build int8 --precision int8
build mixed --precision mixed
build int8-dynamic --precision int8 --int8-scheme dynamic
build mixed-dynamic --precision mixed --int8-scheme dynamic
build mixed-dynamic-nodes --precision mixed --int8-scheme dynamic --node-search
.venv/bin/python -m mqc_edge.precision.gate_summary "$OUT"/fp16 "$OUT"/fp16-plan "$OUT"/bf16 "$OUT"/bf16-plan "$OUT"/int8 \
    "$OUT"/mixed "$OUT"/int8-dynamic "$OUT"/mixed-dynamic "$OUT"/mixed-dynamic-nodes | tee "$OUT/gates.md"
