#!/usr/bin/env bash
# Builds the GGUF libFuzzer target with clang (ASan + UBSan) and fuzzes for N seconds.
#   tests/fuzz/run_fuzz.sh [seconds]      (default 60)
# Env: JARVIS_FUZZ_BUILD (default build/fuzz), JARVIS_FUZZ_CXX (default clang++).
# Exit: 0 no finding, 77 skipped (no clang with libFuzzer), anything else a finding or an error.
# The working corpus lives in $JARVIS_FUZZ_BUILD/corpus and grows across runs; crashing inputs are
# written to $JARVIS_FUZZ_BUILD/artifacts/crash-* (reproduce: $JARVIS_FUZZ_BUILD/gguf_fuzz FILE).
set -euo pipefail

seconds="${1:-60}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${JARVIS_FUZZ_BUILD:-$repo/build/fuzz}"
cxx="${JARVIS_FUZZ_CXX:-clang++}"
mkdir -p "$build/corpus" "$build/artifacts"

flags=(-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
       -fno-omit-frame-pointer -I"$repo")
sources=("$repo/tests/fuzz/gguf_fuzz.cpp" "$repo/csrc/gguf/gguf_file.cpp"
         "$repo/csrc/util/mapped_file.cpp" "$repo/kernels/ggml_types.cpp"
         "$repo/kernels/cpu/dequant.cpp")
headers=("$repo"/csrc/gguf/*.h "$repo"/csrc/util/*.h "$repo"/kernels/*.h "$repo"/kernels/cpu/*.h)

if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "SKIP fuzz.gguf: $cxx not found (libFuzzer needs clang)"
  exit 77
fi
probe="$build/probe.cpp"
printf '#include <cstddef>\n#include <cstdint>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n' >"$probe"
if ! "$cxx" -fsanitize=fuzzer,address,undefined "$probe" -o "$build/probe" 2>"$build/probe.log"; then
  echo "SKIP fuzz.gguf: $cxx cannot link -fsanitize=fuzzer (see $build/probe.log)"
  exit 77
fi

# Rebuild only when a source or header is newer than the binary.
target="$build/gguf_fuzz"
rebuild=0
[[ -x "$target" ]] || rebuild=1
for f in "${sources[@]}" "${headers[@]}" "$0"; do
  [[ "$f" -nt "$target" ]] && rebuild=1
done
if (( rebuild )); then
  echo "building $target"
  "$cxx" "${flags[@]}" "${sources[@]}" -o "$target.tmp"
  mv "$target.tmp" "$target"
fi

echo "fuzzing for ${seconds}s (corpus $build/corpus, seeds $repo/tests/fuzz/seeds)"
# rss_limit: the parser caps its metadata memory well below this; malloc_limit catches any
# single allocation sized from untrusted counts.
"$target" "$build/corpus" "$repo/tests/fuzz/seeds" \
  -dict="$repo/tests/fuzz/gguf.dict" -max_total_time="$seconds" -max_len=8192 -timeout=10 \
  -rss_limit_mb=2048 -malloc_limit_mb=1024 -artifact_prefix="$build/artifacts/" -print_final_stats=1
echo "fuzz.gguf: no findings in ${seconds}s"
