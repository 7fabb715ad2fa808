#!/usr/bin/env bash
# Pipeline serving benchmark for benchmarks/RESULTS.md (issue 4): the default model over 3 local
# ranks with every link shaped (one-way delay), micro-batching off (--micro-batches 1) and on
# (--micro-batches = ranks), jarvis-bench at several concurrencies. Prints a markdown table and
# writes sweep.json + throughput.png into OUT_DIR. Not run by CI.
#   benchmarks/pipeline/sweep.sh [delay] [concurrencies...]      e.g. benchmarks/pipeline/sweep.sh 5ms 1 3 6 12
# Env: RANKS (3), SPLIT (even), IN (32 prompt tokens), OUTLEN (32 output tokens), OUT_DIR
# (benchmarks/pipeline/out-<delay>), SERVE_ARGS (extra jarvis-serve flags), PORT (8766).
set -euo pipefail
cd "$(dirname "$0")/../.."
DELAY=${1:-5ms}
shift || true
CONCURRENCIES=("${@:-1 3 6 12}")
read -r -a CONCURRENCIES <<<"${CONCURRENCIES[*]}"
RANKS=${RANKS:-3}
IN=${IN:-32}
OUTLEN=${OUTLEN:-32}
BIN=${JARVIS_BIN_DIR:-build/bin}
PORT=${PORT:-8766}
OUT_DIR=${OUT_DIR:-benchmarks/pipeline/out-$DELAY}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT_DIR"
SERVE_PID=""
trap 'kill "$SERVE_PID" 2>/dev/null || true; wait 2>/dev/null || true' EXIT

start_server() {  # $1: micro-batches
  local split=()
  [ -n "${SPLIT:-}" ] && split=(--split "$SPLIT")
  # shellcheck disable=SC2086
  "$BIN/jarvis-serve" --port "$PORT" --ranks "$RANKS" "${split[@]}" --micro-batches "$1" \
    --link-delay "*:$DELAY" --threads 1 --worker-threads 1 ${SERVE_ARGS:-} >"$OUT_DIR/serve-m$1.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1 && return 0
    kill -0 "$SERVE_PID" 2>/dev/null || { cat "$OUT_DIR/serve-m$1.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "jarvis-serve did not come up" >&2
  exit 1
}

for m in 1 "$RANKS"; do
  start_server "$m"
  curl -s "http://127.0.0.1:$PORT/metrics" >"$OUT_DIR/metrics-m$m-before.txt" || true
  for c in "${CONCURRENCIES[@]}"; do
    n=$((c * 3 > 6 ? c * 3 : 6))
    "$BIN/jarvis-bench" --base-url "http://127.0.0.1:$PORT/v1" -n "$n" --concurrency "$c" --input-len "$IN" \
      --output-len "$OUTLEN" --warmup 1 --json "$OUT_DIR/m$m-c$c.json" >"$OUT_DIR/m$m-c$c.txt" 2>&1
  done
  curl -s "http://127.0.0.1:$PORT/metrics" >"$OUT_DIR/metrics-m$m-after.txt" || true
  kill "$SERVE_PID"
  wait "$SERVE_PID" 2>/dev/null || true
  SERVE_PID=""
done

"$PY" benchmarks/pipeline/report.py "$OUT_DIR" "$DELAY" "$RANKS" "${CONCURRENCIES[@]}"
