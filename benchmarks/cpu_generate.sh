#!/usr/bin/env bash
# Prompt and decode tokens/s of jarvis-cli with 1 and 2 threads, peak memory, and the memory
# bandwidth bound, printed as markdown rows for benchmarks/RESULTS.md. Not run by CI.
#   benchmarks/cpu_generate.sh [model.gguf] [runs]
# LLAMA_BENCH=/path/to/llama-bench adds llama.cpp's figures on the same file for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
RUNS=${2:-3}
BIN=${JARVIS_BIN_DIR:-build/bin}
PROMPT_TOKENS=128
GEN_TOKENS=128
# A fixed ~130-token prompt; the exact count is printed by jarvis-cli.
PROMPT=$(printf 'The history of computing is a story of ideas that changed how people work and live. %.0s' 1 2 3 4 5 6 7)

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "| engine | threads | prompt tokens | prompt tok/s | decode tok/s | peak RSS |"
echo "| --- | --- | --- | --- | --- | --- |"
for t in 1 2; do
  pp=(); tg=(); rss=""; ptoks=""
  for _ in $(seq "$RUNS"); do
    err=$("$BIN/jarvis-cli" -m "$MODEL" -p "$PROMPT" -n "$GEN_TOKENS" --ignore-eos --temperature 0 -t "$t" \
          --ctx 512 2>&1 >/dev/null)
    pp+=("$(sed -n 's/^prompt: \([0-9]*\) tokens, \([0-9.]*\) tokens\/s.*/\2/p' <<<"$err")")
    ptoks=$(sed -n 's/^prompt: \([0-9]*\) tokens.*/\1/p' <<<"$err")
    tg+=("$(sed -n 's/^generated: [0-9]* tokens, \([0-9.]*\) tokens\/s.*/\1/p' <<<"$err")")
    rss=$(sed -n 's/^peak RSS: //p' <<<"$err")
  done
  echo "| jarvis (F32 weights) | $t | $ptoks | $(printf '%s\n' "${pp[@]}" | median) | $(printf '%s\n' "${tg[@]}" | median) | $rss |"
done

if [ -n "${LLAMA_BENCH:-}" ]; then
  for t in 1 2; do
    "$LLAMA_BENCH" -m "$MODEL" -p "$PROMPT_TOKENS" -n "$GEN_TOKENS" -t "$t" -r "$RUNS" -o csv 2>/dev/null |
      awk -F, -v t="$t" 'NR>1 {gsub(/"/,""); for(i=1;i<=NF;i++) h[i]=$i} NR==1 {gsub(/"/,""); for(i=1;i<=NF;i++) c[$i]=i}
        NR>1 { kind = h[c["n_prompt"]] > 0 ? "pp" : "tg"; v[kind]=h[c["avg_ts"]] }
        END { printf "| llama.cpp (Q4_1 kept quantized) | %s | %d | %.1f | %.1f | |\n", t, '"$PROMPT_TOKENS"', v["pp"], v["tg"] }'
  done
fi

echo
"$BIN/jarvis-membw" 1024 2 | sed 's/^/membw: /'
