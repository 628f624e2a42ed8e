#!/usr/bin/env bash
# The main job: set-up if needed, then generate a chat answer with SmolLM2-135M-Instruct and print tokens/s.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
MODEL="${QOQ_CACHE:-$HOME/.cache/qoq}/models/SmolLM2-135M-Instruct.Q4_1.gguf"
"$ROOT/build/qoq" generate "$MODEL" --chat --prompt "${1:-What is the capital of France? Answer in one sentence.}" \
  --max-tokens 64
