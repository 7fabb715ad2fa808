#!/usr/bin/env bash
# Builds the llama.cpp that Jarvis is compared against, outside this repository.
#
# The pinned source is the llama.cpp vendored in the llama-cpp-python sdist (a fixed, PyPI-hosted
# snapshot, so a rerun next year builds the same code). Only llama-bench, llama-server and
# llama-cli are built: Release, CPU only, native ISA (as a user building it on the machine would).
#
# Usage: benchmarks/cpu/build_llamacpp.sh [WORK_DIR]   (default /work/refs)
#   env: PYTHON (a python with pip; default python3), JOBS (default 2), NICE (default 10)
# Prints the build directory (WORK_DIR/llama.cpp-build) on its last line; pass that to
# compare_llamacpp.sh.
set -euo pipefail

version=0.3.36
work_dir=${1:-/work/refs}
python=${PYTHON:-python3}
jobs=${JOBS:-2}
niceness=${NICE:-10}

mkdir -p "$work_dir"
sdist="$work_dir/llama_cpp_python-$version.tar.gz"
if [[ ! -f $sdist ]]; then
  "$python" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work_dir"
fi
src="$work_dir/llama_cpp_python-$version/vendor/llama.cpp"
if [[ ! -d $src ]]; then
  tar -xzf "$sdist" -C "$work_dir"
fi

build="$work_dir/llama.cpp-build"
# No network at build time: no prebuilt web UI download, no HTTPS client.
nice -n "$niceness" cmake -S "$src" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF \
  -DGGML_NATIVE=ON \
  -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
  -DLLAMA_OPENSSL=OFF
nice -n "$niceness" cmake --build "$build" -j "$jobs" --target llama-bench llama-server llama-cli
echo "$build"
