#!/usr/bin/env bash
# Runs the attention tests and benchmark on the GPU machine from prebuilt binaries in devcarry/attn/ (build here,
# copy the binaries and libfmt.so.9 there, carry the folder: see docs/kv_cache.md). Logs go to $OUT.
# Usage (on the device): scripts/device-check-attn.sh [--tests-only|--bench-only] [extra bench args]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${ATTN_BIN:-$ROOT/devcarry/attn}"  # ATTN_BIN=devcarry/prefill for the prefill binaries
OUT="${OUT:-/tmp/qoq-device}"
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$BIN:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
MODE=all
[ "${1:-}" = --tests-only ] && MODE=tests && shift
[ "${1:-}" = --bench-only ] && MODE=bench && shift
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee "$OUT/gpu.txt"
rc_t=skipped; rc_b=skipped
if [ "$MODE" != bench ]; then
  for t in "$BIN"/cuda_test_*; do
    timeout 400 "$t" >"$OUT/$(basename "$t").log" 2>&1; rc=$?
    echo "$(basename "$t"): rc=$rc"; rc_t="$rc_t $rc"
    grep -E "^\[  (PASSED|FAILED)|^\[  FAILED|worst|Failure" "$OUT/$(basename "$t").log" | head -60
  done
fi
if [ "$MODE" != tests ]; then
  for b in "$BIN"/bench_*; do
    timeout 400 "$b" --csv "$OUT/$(basename "$b").csv" "$@" 2>&1 | tee "$OUT/$(basename "$b").log"
  done
fi
if command -v cuobjdump >/dev/null; then
  for f in "$BIN"/cuda_test_*; do
    echo "$(basename "$f"): LDL/STL $(cuobjdump --dump-sass "$f" | grep -cE '\b(LDL|STL)\b')"
  done
fi
