#!/usr/bin/env bash
# Runs the CUDA tests and the GEMM benchmark on the GPU machine from prebuilt binaries in devcarry/ (see
# docs/gemm.md: build here, copy the binaries, carry the folder). Full logs go to $OUT; a short table prints last.
# Usage (on the device): scripts/device-check.sh [--quick] [--skip-big]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/devcarry"
OUT="${OUT:-/tmp/qoq-device}"
mkdir -p "$OUT"
# libfmt.so.9 travels with the binaries (the GPU image lacks it).
export LD_LIBRARY_PATH="$BIN:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
QUICK=""; SKIP_BIG=0
for a in "$@"; do
  case "$a" in
    --quick) QUICK=--quick ;;
    --skip-big) SKIP_BIG=1 ;;
  esac
done

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader | tee "$OUT/gpu.txt"

status() { [ "$1" = 0 ] && echo PASS || echo "FAIL(rc=$1)"; }

# 1. Fast correctness checks first: a broken kernel (or a hung pipeline) shows here within seconds.
timeout 90 "$BIN/cuda_test_qgemm" --gtest_filter='ActQuant*:Repack*:QGemm.EveryConfig*:QGemm.Persistent*:QGemm.BiasResidual*:QGemm.Rejects*:QGemm.Pdl*' \
  >"$OUT/test_fast.log" 2>&1
rc_fast=$?
# 2. The model shapes at every M (Llama-3-8B, SmolLM2; with --skip-big not Llama-3-70B / Qwen2-72B).
rc_shapes=skipped
if [ "$rc_fast" = 0 ]; then
  filter='QGemm.W*'
  [ "$SKIP_BIG" = 1 ] && filter='QGemm.W*-*70B*'
  timeout 300 "$BIN/cuda_test_qgemm" --gtest_filter="$filter" >"$OUT/test_shapes.log" 2>&1
  rc_shapes=$?
fi
# 3. The benchmark.
timeout 150 "$BIN/bench_gemm" $QUICK --csv "$OUT/bench.csv" >"$OUT/bench.log" 2>&1
rc_bench=$?
# 4. SASS facts: the int8 wgmma (IGMMA) is there, and no local-memory spills in the GEMM kernels.
if command -v cuobjdump >/dev/null; then
  cuobjdump --dump-sass "$BIN/bench_gemm" >"$OUT/sass.txt" 2>&1 || true
  {
    echo "IGMMA instructions: $(grep -c 'IGMMA' "$OUT/sass.txt")"
    echo "LDL/STL (local memory) instructions: $(grep -cE '\b(LDL|STL)\b' "$OUT/sass.txt")"
  } >"$OUT/sass_summary.txt"
  gzip -f "$OUT/sass.txt"
fi

echo
echo "================ device-check summary ================"
grep -E "^\[  (PASSED|FAILED)  \]|^\[  FAILED  \]" "$OUT/test_fast.log" | head -20
[ -f "$OUT/test_shapes.log" ] && grep -E "^\[  (PASSED|FAILED)  \]|^\[  FAILED  \]" "$OUT/test_shapes.log" | head -20
cat "$OUT"/test_*.log 2>/dev/null | grep -E "Failure|got 0x|mismatch|differ|poison|error" | head -12
[ -f "$OUT/sass_summary.txt" ] && cat "$OUT/sass_summary.txt"
echo "fast tests: $(status $rc_fast)   shape tests: $([ "$rc_shapes" = skipped ] && echo skipped || status $rc_shapes)   bench: $(status $rc_bench)"
echo "--- bench (us per call; W4pcTB = W4 bytes / time; vsBest = best cuBLAS time / ours; frLim = limit / ours)"
grep -E "^device|^shape|^(qkv|o|gate_up|down) |^activation|^  (qkv|o|gate_up|down) +M=" "$OUT/bench.log" | cut -c1-200
