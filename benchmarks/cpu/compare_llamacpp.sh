#!/usr/bin/env bash
# Jarvis vs llama.cpp on one GGUF file: see compare_llamacpp.py (--help). Builds nothing.
#   benchmarks/cpu/compare_llamacpp.sh --llama-build /work/refs/llama.cpp-build [--out report.md]
# PYTHON: an interpreter with the `gguf` package (default: the repo's .venv).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
exec "${PYTHON:-$root/.venv/bin/python}" "$root/benchmarks/cpu/compare_llamacpp.py" "$@"
