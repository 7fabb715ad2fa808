#!/usr/bin/env bash
# Serving benchmark for benchmarks/RESULTS.md: starts jarvis-serve on the default model, runs
# jarvis-bench at several concurrencies with fixed input/output lengths (ignore_eos), and prints
# one markdown row per concurrency plus the aggregate decode speed-up over one stream. Not run by CI.
#   benchmarks/serving_sweep.sh [num_prompts] [input_len] [output_len] [concurrencies...]
# SERVE_ARGS adds flags to jarvis-serve (e.g. "--threads 2"); BASE_URL benchmarks another server
# instead of starting one.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-32}
IN=${2:-128}
OUT=${3:-64}
shift 3 2>/dev/null || shift $#
CONCURRENCIES=("${@:-1 4 16}")
read -r -a CONCURRENCIES <<<"${CONCURRENCIES[*]}"
BIN=${JARVIS_BIN_DIR:-build/bin}
PORT=${PORT:-8765}
WORK=$(mktemp -d)
trap 'kill "$SERVE_PID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
SERVE_PID=""

if [ -z "${BASE_URL:-}" ]; then
  # shellcheck disable=SC2086
  "$BIN/jarvis-serve" --port "$PORT" ${SERVE_ARGS:-} >"$WORK/serve.log" 2>&1 &
  SERVE_PID=$!
  BASE_URL=http://127.0.0.1:$PORT/v1
  for _ in $(seq 300); do
    curl -sf "$BASE_URL/models" >/dev/null 2>&1 && break
    kill -0 "$SERVE_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
    sleep 0.2
  done
fi

echo "| concurrency | requests | failed | duration s | req/s | output tok/s | total tok/s | TTFT mean / p99 ms | TPOT mean / p99 ms | ITL p50 / p99 ms | E2E mean ms |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for c in "${CONCURRENCIES[@]}"; do
  "$BIN/jarvis-bench" --base-url "$BASE_URL" -n "$N" --concurrency "$c" --input-len "$IN" \
    --output-len "$OUT" --warmup 1 --json "$WORK/c$c.json" >"$WORK/c$c.txt" 2>/dev/null || true
  python3 - "$WORK/c$c.json" "$c" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); c = sys.argv[2]
t, p, i, e = r["ttft_ms"], r["tpot_ms"], r["itl_ms"], r["e2e_ms"]
print(f"| {c} | {r['completed']} | {r['failed']} | {r['duration_s']:.1f} | {r['request_throughput']:.2f} | "
      f"{r['output_throughput']:.1f} | {r['total_token_throughput']:.1f} | {t['mean']:.0f} / {t['p99']:.0f} | "
      f"{p['mean']:.1f} / {p['p99']:.1f} | {i['p50']:.1f} / {i['p99']:.1f} | {e['mean']:.0f} |")
PY
done
python3 - "$WORK" "${CONCURRENCIES[@]}" <<'PY'
import json, sys
work, cs = sys.argv[1], sys.argv[2:]
# Aggregate decode rate: output tokens over the time spent decoding them, i.e. streams in flight
# divided by the mean TPOT; compared with the one-stream run.
def decode_rate(c):
    r = json.load(open(f"{work}/c{c}.json"))
    return r["output_throughput"], 1e3 * min(int(c), r["requests"]) / r["tpot_ms"]["mean"]
base_out, base_dec = decode_rate(cs[0])
for c in cs[1:]:
    out, dec = decode_rate(c)
    print(f"\nconcurrency {c} vs {cs[0]}: output throughput x{out / base_out:.2f}, "
          f"aggregate decode rate (streams / mean TPOT) x{dec / base_dec:.2f}")
PY
