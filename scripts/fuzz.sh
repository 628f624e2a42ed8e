#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for N seconds (default 30) from the seed
# corpora in fuzz/corpus/<target>/. Seeds are copied to the build dir first, so the committed corpus stays small.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (targets: fuzz_* in fuzz/CMakeLists.txt)
# Exit status is non-zero if any fuzzer found a crash; reproducers are left in build-fuzz/fuzz-artifacts/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${QOQ_FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
SECONDS_EACH="${1:-30}"
shift || true
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(fuzz_safetensors fuzz_gguf fuzz_llama2c fuzz_hf_config fuzz_tok512 fuzz_tokenizer_json fuzz_gguf_tokenizer
  fuzz_qoq_json)

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 1; }
CC=clang CXX=clang++ cmake -S "$ROOT" -B "$BUILD" -G Ninja -DQOQ_FUZZ=ON -DQOQ_CUDA=OFF -DQOQ_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target "${TARGETS[@]}"

status=0
mkdir -p "$BUILD/fuzz-artifacts"
for t in "${TARGETS[@]}"; do
  work="$BUILD/fuzz-corpus/$t"
  mkdir -p "$work"
  cp -n "$ROOT/fuzz/corpus/$t/"* "$work/" 2>/dev/null || true
  echo "== $t for ${SECONDS_EACH}s"
  if ! "$BUILD/fuzz/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
      -print_final_stats=1 -artifact_prefix="$BUILD/fuzz-artifacts/$t-" "$work" 2>"$BUILD/fuzz-artifacts/$t.log"; then
    echo "!! $t failed; see $BUILD/fuzz-artifacts/$t.log" >&2
    grep -E "ERROR|SUMMARY|==[0-9]+==" "$BUILD/fuzz-artifacts/$t.log" | head -5 >&2 || true
    status=1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$BUILD/fuzz-artifacts/$t.log" | tr '\n' ' '
  echo
done
exit $status
