#!/usr/bin/env bash
# The main job: set-up if needed, quantize SmolLM2-135M-Instruct with QoQ (W4A8KV4, g128) once, then generate a
# chat answer with the quantized checkpoint through the integer path and print tokens/s. The checkpoint is kept
# in the cache; delete it (or set QOQ_REQUANTIZE=1) to quantize again. Runs on the CPU (the GPU model path is
# not wired yet).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
CACHE="${QOQ_CACHE:-$HOME/.cache/qoq}"
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
CKPT="$CACHE/checkpoints/SmolLM2-135M-Instruct-qoq-w4a8kv4-g128"
QOQ="$ROOT/build/qoq"
if [ "${QOQ_REQUANTIZE:-0}" = 1 ] || ! "$QOQ" inspect "$CKPT" >/dev/null 2>&1; then
  echo "demo: quantizing $MODEL -> $CKPT (QoQ W4A8KV4 g128; a few minutes on 2 cores)"
  # 16 calibration windows of 512 tokens keep the demo short; `qoq quantize --help` shows the defaults (128 x 512).
  "$QOQ" quantize "$MODEL" -o "$CKPT" --overwrite --calib-dir "$ROOT/../shared/data/calibration" \
    --calib-windows "${QOQ_CALIB_WINDOWS:-16}"
fi
"$QOQ" generate "$CKPT" --chat --prompt "${1:-What is the capital of France? Answer in one sentence.}" \
  --max-tokens 64
