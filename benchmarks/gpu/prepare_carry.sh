#!/usr/bin/env bash
# Run on the dev machine before a GPU lease: fills .gpu-deps/ (in .gitignore) with what the bare GPU machine lacks for run_all.sh's direct build and model
# tests: GoogleTest sources, nlohmann/json headers and an 8-layer copy of the default model
# (under the 64 MiB a run carries). Then call the device run with carry [".gpu-deps"] and
# `bash benchmarks/gpu/run_all.sh`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PY=${JARVIS_PYTHON:-/work/main/.venv/bin/python}
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
LAYERS=${LAYERS:-8}

mkdir -p .gpu-deps/include
[ -d .gpu-deps/googletest ] || cp -r /usr/src/googletest .gpu-deps/googletest
[ -d .gpu-deps/include/nlohmann ] || cp -r /usr/include/nlohmann .gpu-deps/include/
out=.gpu-deps/smollm2-${LAYERS}l.gguf
[ -f "$out" ] || "$PY" scripts/truncate_gguf.py "$MODEL" "$out" --layers "$LAYERS"
du -sh .gpu-deps
