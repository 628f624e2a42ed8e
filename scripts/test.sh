#!/usr/bin/env bash
# Set-up if needed, then build and run the tests: a Release build (CUDA code compiled when nvcc is present;
# GPU tests, label `cuda`, run only where a GPU is), and an AddressSanitizer/UBSan build of the CPU code.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh" --no-build
J=$(nproc)
# The shared data sits at ../shared/data beside the project. A clone made elsewhere (e.g. a temp dir) finds it
# beside the repository it was cloned from.
DATA="$ROOT/../shared/data"
if [ ! -d "$DATA" ]; then
  ORIGIN="$(git -C "$ROOT" config --get remote.origin.url 2>/dev/null || true)"
  if [ -n "$ORIGIN" ] && [ -d "$ORIGIN/../shared/data" ]; then DATA="$(cd "$ORIGIN/../shared/data" && pwd)"; fi
fi
[ -d "$DATA" ] || { echo "test.sh: shared data not found at $ROOT/../shared/data" >&2; exit 1; }
DATA="$(cd "$DATA" && pwd)"
LABELS=(-LE cuda)
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then LABELS=(); fi

echo "== Release build and tests"
cmake -S "$ROOT" -B "$ROOT/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQOQ_DATA_DIR="$DATA" >/dev/null
cmake --build "$ROOT/build" -j"$J"
(cd "$ROOT/build" && ctest --output-on-failure -j"$J" "${LABELS[@]}")

if [ "${QOQ_SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== AddressSanitizer + UBSan build and tests (CPU)"
  cmake -S "$ROOT" -B "$ROOT/build-asan" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DQOQ_SANITIZE=ON -DQOQ_CUDA=OFF -DQOQ_DATA_DIR="$DATA" \
    -DCMAKE_CXX_FLAGS="-O1" >/dev/null
  cmake --build "$ROOT/build-asan" -j"$J"
  (cd "$ROOT/build-asan" && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j"$J" -LE "cuda|slow")
fi
