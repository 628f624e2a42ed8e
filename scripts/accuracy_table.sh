#!/usr/bin/env bash
# The WikiText-2 accuracy table of a model (docs/results.md): FP, W8A8KV8, RTN and QoQ W4A8KV4 (per-channel and
# g128), KV16 evaluations of the W4 checkpoints, and the QoQ ablations (each pass removed in turn).
# Usage: scripts/accuracy_table.sh MODEL OUT_DIR CTX WINDOWS CALIB_WINDOWS [ROWS...]
#   ROWS: a subset of the row names below (default: all). Every row uses the same first WINDOWS windows.
# Writes OUT_DIR/table.md (one line per row, appended as rows finish) and OUT_DIR/<row>.{quantize,ppl}.log.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QOQ="${QOQ_BIN:-$ROOT/build/qoq}"
DATA="${QOQ_WIKI:-$ROOT/../shared/data/wikitext-2-raw/wiki.test.raw}"
CALIB="${QOQ_CALIB_DIR:-$ROOT/../shared/data/calibration}"
MODEL=$1 OUT=$2 CTX=$3 WINDOWS=$4 CW=$5
shift 5
mkdir -p "$OUT"

# name | quantize flags ("-" = evaluate the FP model) | ppl flags | checkpoint reused by name (for eval-only rows)
ROWS_DEF=(
  "fp|-||"
  "fp_kv4|-|--kv-bits 4|"
  "w8a8kv8_rtn|--rtn --weights 8 --kv-bits 8||"
  "rtn_pc|--rtn --group-size -1||"
  "rtn_g128|--rtn --group-size 128||"
  "rtn_g128_kv16|||rtn_g128"
  "qoq_pc|--group-size -1||"
  "qoq_g128|--group-size 128||"
  "qoq_g128_kv16|||qoq_g128"
  "qoq_g128_kv8|||qoq_g128"
  "qoq_g128_no_rotate|--group-size 128 --no-rotate||"
  "qoq_g128_no_reorder|--group-size 128 --no-reorder||"
  "qoq_g128_no_smooth_attention|--group-size 128 --no-smooth-attention||"
  "qoq_g128_no_smooth|--group-size 128 --no-smooth||"
  "qoq_g128_no_alpha_search|--group-size 128 --no-alpha-search||"
  "qoq_g128_no_gptq|--group-size 128 --no-gptq||"
  "qoq_pc_no_clip|--group-size -1 --no-clip||"
)
want() { [ $# -eq 0 ] && return 0; for r in "${SEL[@]}"; do [ "$r" = "$1" ] && return 0; done; return 1; }
SEL=("$@")

for def in "${ROWS_DEF[@]}"; do
  IFS='|' read -r name qflags pflags reuse <<<"$def"
  if [ ${#SEL[@]} -gt 0 ] && ! want "$name"; then continue; fi
  qsec=""
  if [ "$qflags" = "-" ]; then
    target="$MODEL"
  elif [ -n "$reuse" ]; then
    target="$OUT/ckpt_$reuse"
    case $name in *_kv16) pflags="--kv-bits 16" ;; *_kv8) pflags="--kv-bits 8" ;; esac
  else
    target="$OUT/ckpt_$name"
    # shellcheck disable=SC2086
    "$QOQ" quantize "$MODEL" -o "$target" --overwrite -q --calib-dir "$CALIB" --calib-windows "$CW" $qflags \
      >"$OUT/$name.quantize.log" 2>&1
    qsec=$(grep -E '^  total ' "$OUT/$name.quantize.log" | awk '{print $2}')
  fi
  # shellcheck disable=SC2086
  "$QOQ" ppl "$target" --data "$DATA" --ctx "$CTX" --max-windows "$WINDOWS" $pflags >"$OUT/$name.ppl.log" 2>&1
  ppl=$(tr '\r' '\n' <"$OUT/$name.ppl.log" | grep -E '^ppl [0-9]' | tail -1 | awk '{print $2}')
  shown="$qflags"
  [ "$qflags" = "-" ] && shown="(FP model)"
  [ -n "$reuse" ] && shown="(checkpoint $reuse)"
  echo "| $name | $shown $pflags | $ppl | ${qsec:+${qsec} s} |" | tee -a "$OUT/table.md"
done
