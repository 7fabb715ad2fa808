#!/usr/bin/env bash
# One-shot GPU check for a fresh GPU machine (meant for a 30-minute lease, done in < 10 minutes):
#   1. GPU model, driver, date;
#   2. build the CUDA kernels, the GPU tests and the attention and layer benchmarks (archs 80, 90);
#   3. run the GPU tests (ctest -L gpu, or the test binaries directly on the fallback build): the
#      kernels against the CPU backend, and the model on the GPU (csrc/cuda/) against the CPU Model;
#   4. compute-sanitizer memcheck and racecheck on a small subset of the kernel and model tests
#      (decode CUDA graphs included), each run capped so the step stays near 2 minutes;
#   5. jarvis-cli greedy text on the CPU and the GPU side by side (CMake build only); jarvis-serve
#      --device cuda:0 answering a completion and jarvis-bench against it (when cpp-httplib builds);
#      a mixed CPU/GPU pipeline ring against the CPU ring (tests/gpu/mixed_ring_test.py);
#   6. the attention benchmark;
#   7. the layer benchmark (jarvis-gpu-layer-bench --quick): layer kernels and decode GEMMs as a
#      fraction of peak bandwidth, the whole decode step with CUDA graphs on and off (JSON:
#      layer_bench.json).
# Everything goes to $OUT when set (the device tool brings it back), else build/gpu-results.
#
# Build paths. The GPU machines of this workplace have nvcc, CMake, ninja and python3 but none of
# the project's C++ dependencies, and reach no package registry. So, on the dev machine first:
#   bash benchmarks/gpu/prepare_carry.sh
# which fills .gpu-deps/ (ignored): sysroot/ (Debian 12 UCX, prometheus-cpp, cpp-httplib, CLI11,
# nlohmann_json, GoogleTest, pkgconf, unpacked with dpkg -x, ~12 MB) and an 8-layer SmolLM2
# (50 MB, scripts/truncate_gguf.py), under the 64 MiB a run carries; then one device call:
#   run(command="bash benchmarks/gpu/run_all.sh", carry=[".gpu-deps"], timeout_s=600)
# (csrc/cuda/README.md, "First checks on a GPU machine", has the two-call split). Here CMake
# (-DJARVIS_CUDA=ON) is pointed at .gpu-deps/sysroot (CMAKE_PREFIX_PATH, PKG_CONFIG_LIBDIR,
# PKG_CONFIG_SYSROOT_DIR), the binaries find its libraries through their RUNPATH and
# LD_LIBRARY_PATH=.gpu-deps/sysroot/runtime (UCX its transports through UCX_MODULE_DIR), and NCCL comes from the CUDA
# toolkit or the image's Python nvidia-nccl wheel: everything builds, jarvis-serve, jarvis-worker,
# jarvis-bench and the NCCL tests included. JARVIS_GPU_CMAKE_ARGS adds configure arguments.
# If the configure or the build fails (no .gpu-deps, say), a direct build with nvcc and g++
# compiles only the kernel and model tests and the two GPU benchmarks, against the sysroot's
# GoogleTest, else GoogleTest sources ($GTEST_SRC, /usr/src/googletest, .gtest/).
# JARVIS_GPU_DIRECT=1 forces the direct build; JOBS sets the parallelism (16).
#
# The model tests (tests/gpu/model/) read JARVIS_TEST_MODEL, else models/SmolLM2-...gguf, else
# .gpu-deps/*.gguf. Without a model file the SmolLM2 tests skip, saying so; the synthetic-model
# tests still run.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
RES=${OUT:-$ROOT/build/gpu-results}
mkdir -p "$RES"
exec > >(tee "$RES/run_all.log") 2>&1
JOBS=${JOBS:-16}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
start_s=$(date +%s)
DEPS=$ROOT/.gpu-deps
if [ -z "${JARVIS_TEST_MODEL:-}" ]; then
  for m in "$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf" "$DEPS"/*.gguf; do
    [ -f "$m" ] && { export JARVIS_TEST_MODEL=$m; break; }
  done
fi
step() { echo; echo "=== $* ($(($(date +%s) - start_s)) s)"; }
status=0
# Phases and a time budget, so one device call (600 s at most) never loses the whole run: a
# section runs when its phase is listed in JARVIS_GPU_PHASES (default: all) and at least its
# expected time is left of JARVIS_GPU_BUDGET_S (default 560 s); otherwise it says why it was
# skipped. Two calls cover everything on a slow build: JARVIS_GPU_PHASES="tests model" then
# JARVIS_GPU_PHASES="cli serve bench" (the second call's CMake build is incremental while the
# machine stays warm).
PHASES=" ${JARVIS_GPU_PHASES:-tests model cli serve bench} "
BUDGET_S=${JARVIS_GPU_BUDGET_S:-560}
section() {  # section PHASE SECONDS_NEEDED
  local left=$((BUDGET_S - ($(date +%s) - start_s)))
  if [[ "$PHASES" != *" $1 "* ]]; then echo; echo "=== phase '$1' not selected (JARVIS_GPU_PHASES)"; return 1; fi
  if [ "$left" -lt "$2" ]; then
    echo; echo "=== phase '$1' SKIPPED: ${left} s of the ${BUDGET_S} s budget left, it needs about $2 s"; status=1; return 1
  fi
}
cap() {  # cap SECONDS: a command's timeout, cut to what is left of the budget (10 s at least)
  local left=$((BUDGET_S - ($(date +%s) - start_s)))
  echo $(( $1 < left ? $1 : (left > 10 ? left : 10) ))
}

step "machine"
date -u
nvidia-smi || echo "nvidia-smi failed"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv || true
"$NVCC" --version | tail -2

step "build"
# ---- build environment: the carried Debian 12 sysroot (benchmarks/gpu/prepare_carry.sh) ----
# CMake finds the packages' config files under CMAKE_PREFIX_PATH (they locate themselves, so the
# sysroot may live anywhere), pkg-config reads only the sysroot's .pc files (prefix=/usr there,
# re-rooted by PKG_CONFIG_SYSROOT_DIR), and the loader takes runtime/'s libraries first (the
# binaries' RUNPATH names the sysroot too). UCX dlopens its transports from lib/ucx beside libucs;
# UCX_MODULE_DIR says where, since libucs is reached through a link in runtime/.
SYSROOT=$DEPS/sysroot
CMAKE_DEPS=()
if [ -d "$SYSROOT/usr/lib/x86_64-linux-gnu" ]; then
  SYSLIB=$SYSROOT/usr/lib/x86_64-linux-gnu
  chmod +x "$SYSROOT"/usr/bin/* 2>/dev/null  # in case a copy lost the modes: pkgconf must run
  export PKG_CONFIG_LIBDIR=$SYSLIB/pkgconfig:$SYSROOT/usr/share/pkgconfig
  export PKG_CONFIG_SYSROOT_DIR=$SYSROOT
  unset PKG_CONFIG_PATH
  # runtime/ holds only what our binaries load (UCX, libnuma, prometheus-cpp-core, cpp-httplib,
  # brotli): the sysroot's libcurl and zlib must not shadow the image's for curl and python3.
  export LD_LIBRARY_PATH=$SYSROOT/runtime${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export UCX_MODULE_DIR=$SYSLIB/ucx
  # The multiarch include folder holds OpenSSL's configuration headers (cpp-httplib includes them):
  # no .pc file names it, as the compiler searches /usr/include/x86_64-linux-gnu by itself.
  CMAKE_DEPS=("-DCMAKE_PREFIX_PATH=$SYSROOT/usr;$SYSROOT" "-DPKG_CONFIG_EXECUTABLE=$SYSROOT/usr/bin/pkgconf"
              "-DCMAKE_CXX_FLAGS=-isystem $SYSROOT/usr/include/x86_64-linux-gnu")
  echo "dependencies: $SYSROOT ($(wc -l <"$SYSROOT/PACKAGES.txt" 2>/dev/null || echo '?') Debian 12 packages)"
  # OpenSSL 3 is not carried (prepare_carry.sh): cpp-httplib takes the image's.
  ldconfig -p 2>/dev/null | grep -q 'libssl.so.3 ' || echo "WARNING: no libssl.so.3 on this machine: jarvis-serve/jarvis-bench will not link"
else
  echo "no $SYSROOT (run benchmarks/gpu/prepare_carry.sh and carry .gpu-deps): CMake needs the libraries installed"
fi
# NCCL: where CMake's find_library(nccl) looks (the CUDA toolkit, the system), else the one Python's
# nvidia-nccl wheel brings (PyTorch images have it; the wheel ships libnccl.so.2 but no libnccl.so
# link, so CMake is given the file itself).
HAVE_NCCL=""
for f in /usr/local/cuda/lib64/libnccl.so /usr/local/cuda/lib/libnccl.so /usr/lib/x86_64-linux-gnu/libnccl.so; do
  [ -e "$f" ] && HAVE_NCCL=$f
done
if [ -n "$HAVE_NCCL" ]; then
  echo "NCCL: $HAVE_NCCL"
else
  NCCL_LIB=$(find /usr/local /opt /usr/lib -name 'libnccl.so*' -path '*nccl*' 2>/dev/null | sort | head -1)
  if [ -n "$NCCL_LIB" ] && [ -f "$(dirname "$NCCL_LIB")/../include/nccl.h" ]; then
    NCCL_INC=$(cd "$(dirname "$NCCL_LIB")/../include" && pwd)
    CMAKE_DEPS+=("-DJARVIS_NCCL_LIB=$NCCL_LIB" "-DJARVIS_NCCL_INCLUDE=$NCCL_INC")
    echo "NCCL: $NCCL_LIB, $NCCL_INC/nccl.h"
  else
    echo "NCCL not found (${NCCL_LIB:-no libnccl.so*}): the CMake configure will fail"
  fi
fi
# Extra configure arguments, e.g. -DCMAKE_SYSTEM_IGNORE_PREFIX_PATH=/usr to prove on the dev
# machine that nothing is taken from /usr (csrc/cuda/README.md).
read -r -a EXTRA_CMAKE <<<"${JARVIS_GPU_CMAKE_ARGS:-}"
# ---- end build environment ----
# ---- no GPU (a dev machine checking this script): the phases that run on cuda:0 only skip ----
if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "no GPU here (nvidia-smi -L lists none): phases 'cli' and 'serve' skip; the tests and benchmarks report their own skips"
  PHASES=${PHASES// cli / }
  PHASES=${PHASES// serve / }
fi
# ---- end no GPU ----
BUILD=$ROOT/build-gpu
TESTS=""
MODEL_TESTS=""
CLI=""
BENCH=""
LAYER_BENCH=""
GEN=Ninja
command -v ninja >/dev/null || GEN="Unix Makefiles"
CMAKE_OK=""
if [ -n "${JARVIS_GPU_DIRECT:-}" ]; then
  echo "JARVIS_GPU_DIRECT is set: CMake skipped"
elif ! cmake -S "$ROOT" -B "$BUILD" -G "$GEN" -DCMAKE_BUILD_TYPE=Release -DJARVIS_CUDA=ON \
     -DCMAKE_CUDA_COMPILER="$NVCC" "-DCMAKE_CUDA_ARCHITECTURES=80;90" -DJARVIS_FUZZ=OFF \
     -DJARVIS_PYTHON="$(command -v python3)" "${CMAKE_DEPS[@]}" "${EXTRA_CMAKE[@]}" >"$RES/configure.log" 2>&1; then
  echo "CMake configure failed (no .gpu-deps? see the header); tail of configure.log:"
  tail -15 "$RES/configure.log"; status=1
elif ! cmake --build "$BUILD" -j "$JOBS" --target jarvis_gpu_tests jarvis_gpu_model_tests jarvis-cli \
       jarvis-gpu-attention-bench jarvis-gpu-layer-bench >"$RES/build.log" 2>&1; then
  echo "CMake build FAILED (tail of build.log):"; tail -40 "$RES/build.log"; status=1
else
  CMAKE_OK=1
  TESTS=$BUILD/bin/jarvis_gpu_tests
  MODEL_TESTS=$BUILD/bin/jarvis_gpu_model_tests
  CLI=$BUILD/bin/jarvis-cli
  BENCH=$BUILD/bin/jarvis-gpu-attention-bench
  LAYER_BENCH=$BUILD/bin/jarvis-gpu-layer-bench
  # The served path: built apart so a failure here loses only serving and the mixed ring.
  if cmake --build "$BUILD" -j "$JOBS" --target jarvis-serve jarvis-worker jarvis-bench >"$RES/build_serve.log" 2>&1; then
    SERVE=$BUILD/bin/jarvis-serve
    LOADGEN=$BUILD/bin/jarvis-bench
  else
    echo "jarvis-serve/jarvis-worker/jarvis-bench did not build (tail of build_serve.log):"
    tail -20 "$RES/build_serve.log"; status=1
  fi
  # NCCL: the link itself and stage workers with NCCL between them (their tests skip, saying
  # so, with fewer than two GPUs). Built apart so a missing NCCL loses only these.
  if ! cmake --build "$BUILD" -j "$JOBS" --target jarvis_gpu_transport_tests jarvis_gpu_pipeline_tests \
       >"$RES/build_nccl.log" 2>&1; then
    echo "NCCL GPU tests did not build (tail of build_nccl.log):"; tail -20 "$RES/build_nccl.log"; status=1
  fi
  echo "CMake build: $(ls "$BUILD/bin" | tr '\n' ' ')"
fi
if [ -z "$CMAKE_OK" ]; then
  echo "-> direct nvcc + g++ build of the GPU tests (no serving, no NCCL, no mixed ring)"
  BUILD=$ROOT/build-gpu-direct
  mkdir -p "$BUILD/obj"
  # GoogleTest: the sysroot's static libraries, else sources ($GTEST_SRC, /usr/src/googletest, .gtest/).
  G=""
  GTEST_LIBS=""
  if [ -f "$SYSROOT/usr/lib/x86_64-linux-gnu/libgtest.a" ]; then
    G=$SYSROOT/usr
    GTEST_LIBS="$SYSROOT/usr/lib/x86_64-linux-gnu/libgtest_main.a $SYSROOT/usr/lib/x86_64-linux-gnu/libgtest.a"
  else
    for cand in "${GTEST_SRC:-}" /usr/src/googletest "$ROOT/.gtest"; do
      [ -n "$cand" ] && [ -f "$cand/googletest/src/gtest-all.cc" ] && { G=$cand/googletest; break; }
    done
  fi
  CXXFLAGS="-std=c++17 -O2 -I$ROOT -I/usr/local/cuda/include -pthread -Wall -Wextra -Wpedantic -Werror -Wno-unused-parameter"
  NVFLAGS="-std=c++17 -O3 -I$ROOT -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90"
  NVFLAGS="$NVFLAGS -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror"
  # csrc/ for the model tests: warnings are CI's business (CMake build), not a reason to lose a
  # GPU run to another compiler version's new warning.
  # (No string macros here: xargs and sh -c would strip their quotes; JARVIS_TEST_MODEL names the model.)
  MFLAGS="-std=c++17 -O2 -I$ROOT -I/usr/local/cuda/include -pthread"
  [ -f /usr/include/nlohmann/json.hpp ] || MFLAGS="$MFLAGS -isystem $SYSROOT/usr/include"
  {
    for f in "$ROOT"/kernels/*.cpp "$ROOT"/kernels/cpu/*.cpp; do echo "g++ $CXXFLAGS -c $f -o $BUILD/obj/k_$(basename "$f").o"; done
    for f in "$ROOT"/kernels/cuda/*.cu; do echo "$NVCC $NVFLAGS -c $f -o $BUILD/obj/cu_$(basename "$f").o"; done
    for f in "$ROOT"/kernels/cuda/*.cpp; do echo "g++ $CXXFLAGS -c $f -o $BUILD/obj/kc_$(basename "$f").o"; done
    # The NCCL link test needs transport/ and NCCL: CMake build only.
    for f in "$ROOT"/tests/gpu/*_test.cpp; do
      [ "$(basename "$f")" = nccl_link_test.cpp ] && continue
      echo "g++ $CXXFLAGS -isystem $G/include -c $f -o $BUILD/obj/t_$(basename "$f").o"
    done
    find "$ROOT/csrc" -name '*.cpp' ! -name no_cuda.cpp | while read -r f; do
      rel=${f#"$ROOT"/csrc/}
      echo "g++ $MFLAGS -c $f -o $BUILD/obj/m_${rel//\//_}.o"
    done
    for f in "$ROOT"/tests/gpu/model/*_test.cpp; do
      echo "g++ $MFLAGS -isystem $G/include -c $f -o $BUILD/obj/tm_$(basename "$f").o"
    done
    echo "g++ $CXXFLAGS -c $ROOT/benchmarks/gpu/attention_bench.cpp -o $BUILD/obj/b_attention_bench.o"
    echo "g++ $MFLAGS -c $ROOT/benchmarks/gpu/layer_bench.cpp -o $BUILD/obj/b_layer_bench.o"
    if [ -n "$G" ] && [ -z "$GTEST_LIBS" ]; then
      echo "g++ -std=c++17 -O2 -pthread -isystem $G/include -I$G -c $G/src/gtest-all.cc -o $BUILD/obj/g_gtest_all.o"
      echo "g++ -std=c++17 -O2 -pthread -isystem $G/include -I$G -c $G/src/gtest_main.cc -o $BUILD/obj/g_gtest_main.o"
    fi
  } >"$BUILD/commands.txt"
  if [ -z "$G" ]; then
    echo "no GoogleTest found: tests cannot be built (see header)"
    grep -v "/tests/gpu/" "$BUILD/commands.txt" >"$BUILD/c2" && mv "$BUILD/c2" "$BUILD/commands.txt"
    status=1
  fi
  if xargs -P "$JOBS" -I{} sh -c '{}' <"$BUILD/commands.txt" >"$RES/build.log" 2>&1; then
    LIBS="-L/usr/local/cuda/lib64 -lcublas -lcudart -pthread"
    K_OBJS=$(ls "$BUILD"/obj/k_*.o "$BUILD"/obj/cu_*.o "$BUILD"/obj/kc_*.o)
    mkdir -p "$BUILD/bin"
    # shellcheck disable=SC2086
    g++ -o "$BUILD/bin/jarvis-gpu-attention-bench" "$BUILD/obj/b_attention_bench.o" $K_OBJS $LIBS >>"$RES/build.log" 2>&1 &&
      BENCH=$BUILD/bin/jarvis-gpu-attention-bench
    # shellcheck disable=SC2086
    g++ -o "$BUILD/bin/jarvis-gpu-layer-bench" "$BUILD/obj/b_layer_bench.o" "$BUILD"/obj/m_*.o $K_OBJS $LIBS \
      >>"$RES/build.log" 2>&1 && LAYER_BENCH=$BUILD/bin/jarvis-gpu-layer-bench
    if [ -n "$G" ]; then
      [ -n "$GTEST_LIBS" ] || GTEST_LIBS="$BUILD/obj/g_gtest_main.o $BUILD/obj/g_gtest_all.o"
      # shellcheck disable=SC2086
      g++ -o "$BUILD/bin/jarvis_gpu_tests" "$BUILD"/obj/t_*.o $K_OBJS $GTEST_LIBS $LIBS >>"$RES/build.log" 2>&1 &&
        TESTS=$BUILD/bin/jarvis_gpu_tests
      # shellcheck disable=SC2086
      g++ -o "$BUILD/bin/jarvis_gpu_model_tests" "$BUILD"/obj/tm_*.o "$BUILD"/obj/m_*.o $K_OBJS \
        $GTEST_LIBS $LIBS >>"$RES/build.log" 2>&1 &&
        MODEL_TESTS=$BUILD/bin/jarvis_gpu_model_tests
    fi
  else
    echo "direct build FAILED (tail of build.log):"; tail -40 "$RES/build.log"; status=1
  fi
fi
echo "tests: ${TESTS:-none}  model tests: ${MODEL_TESTS:-none}  bench: ${BENCH:-none} ${LAYER_BENCH:-}"
echo "model file for the SmolLM2 GPU tests: ${JARVIS_TEST_MODEL:-none (those tests skip)}"

if [ -n "$TESTS" ] && section tests 90; then
  step "GPU tests"
  if [ -f "$BUILD/CTestTestfile.cmake" ]; then
    # gpu.mixed_ring runs in its own section below (its per-dtype agreement lines go to the log).
    (cd "$BUILD" && timeout "$(cap 300)" ctest -L gpu -E '^gpu\.mixed_ring$' --output-on-failure --timeout 300 -j 4) 2>&1 |
      tee "$RES/ctest_gpu.log" | tail -40
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
  fi
  # The binary itself too: one log with every test's name, time and skip reason.
  "$TESTS" --gtest_color=no >"$RES/gpu_tests.log" 2>&1 || status=1
  tail -25 "$RES/gpu_tests.log"

  SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer \
          /usr/local/cuda/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
  if [ -n "$SAN" ]; then
    # A small subset: sanitizers slow kernels 10-100x. f16 covers the 16-bit load paths, f32 the others.
    SUBSET='*CudaAttention.MixedBatch*/f16:*CudaAttention.SplitKv*/f32:*CudaAttention.SmolLm*/bf16'
    SUBSET="$SUBSET:*CudaAttention.Rope*/f16:*CudaAttention.Embedding*/f16:*CudaKernels.*/f16:*CudaGlue.*/f16"
    # Each run is capped at 30 s (4 runs with the model tests' below: ~2 minutes at most). A cap
    # hit (exit 124) means an incomplete check, reported as such, not a sanitizer finding.
    for tool in memcheck racecheck; do
      step "compute-sanitizer --tool $tool (kernel tests)"
      timeout 30 "$SAN" --tool "$tool" --error-exitcode 9 "$TESTS" --gtest_filter="$SUBSET" --gtest_color=no \
        >"$RES/sanitizer_$tool.log" 2>&1
      rc=$?
      tail -8 "$RES/sanitizer_$tool.log"
      echo "compute-sanitizer $tool exit code: $rc"
      if [ $rc -eq 124 ]; then echo "compute-sanitizer $tool: INCOMPLETE (30 s cap hit)"; elif [ $rc -ne 0 ]; then status=1; fi
    done
  else
    echo "compute-sanitizer not found: sanitizer runs skipped"
  fi
fi

# $OUT brings back at most 8 files: the model tests' logs go into the kernel tests' files.
if [ -n "$MODEL_TESTS" ] && section model 90; then
  step "GPU model tests (CUDA shard vs CPU Model)"
  { echo; echo "=== $MODEL_TESTS"; } >>"$RES/gpu_tests.log"
  timeout "$(cap 300)" "$MODEL_TESTS" --gtest_color=no >>"$RES/gpu_tests.log" 2>&1 || status=1
  sed -n "\|=== $MODEL_TESTS|,\$p" "$RES/gpu_tests.log" |
    grep -E -A3 "^\[ *(OK|FAILED|info) *\]|Failure$|Skipped$" | tail -60
  if [ -n "${SAN:-}" ]; then
    # The CUDA shard's mixed steps and the decode graphs (capture, replay, padding rows).
    for tool in memcheck racecheck; do
      step "compute-sanitizer --tool $tool on the model tests"
      { echo; echo "=== model tests"; } >>"$RES/sanitizer_$tool.log"
      timeout 30 "$SAN" --tool "$tool" --error-exitcode 9 "$MODEL_TESTS" --gtest_color=no \
        --gtest_filter='*MixedStepsMatchCpu/llama_f16:*CudaGraphSmoke.*' >>"$RES/sanitizer_$tool.log" 2>&1
      rc=$?
      tail -6 "$RES/sanitizer_$tool.log"
      echo "compute-sanitizer $tool (model) exit code: $rc"
      if [ $rc -eq 124 ]; then echo "compute-sanitizer $tool (model): INCOMPLETE (30 s cap hit)"; elif [ $rc -ne 0 ]; then status=1; fi
    done
  fi
  # ---- device sampling (kernels/cuda/sampling.cu): its shared-memory selects and sort under both tools ----
  if [ -n "${SAN:-}" ]; then
    for tool in memcheck racecheck; do
      step "compute-sanitizer --tool $tool on the sampling kernel"
      timeout "$(cap 150)" "$SAN" --tool "$tool" --error-exitcode 9 "$MODEL_TESTS" --gtest_color=no \
        --gtest_filter='Vocab/CudaSampling.MixedRowsMatchCpu/1:CudaSamplingCases.*' >>"$RES/sanitizer_$tool.log" 2>&1
      rc=$?
      tail -6 "$RES/sanitizer_$tool.log"
      echo "compute-sanitizer $tool (sampling) exit code: $rc"
      [ $rc -eq 0 ] || status=1
    done
  fi
fi

if [ -n "$CLI" ] && [ -n "${JARVIS_TEST_MODEL:-}" ] && section cli 40; then
  # f16 twice: decode CUDA graphs on (the default) and off must print the same text.
  step "jarvis-cli greedy text: CPU, then GPU f32 and f16 (graphs on, off)"
  for dev in "cpu" "cuda:0 --gpu-dtype f32" "cuda:0 --gpu-dtype f16" "cuda:0 --gpu-dtype f16 --cuda-graphs off"; do
    echo "--- --device $dev"
    # shellcheck disable=SC2086
    timeout 120 "$CLI" -m "$JARVIS_TEST_MODEL" -p "The capital of France is" -n 24 --temperature 0 \
      --device $dev 2>&1 || status=1
  done
fi

if [ -n "${SERVE:-}" ] && [ -n "${JARVIS_TEST_MODEL:-}" ] && section serve 60; then
  step "serving on the GPU: jarvis-serve --device cuda:0, jarvis-bench at concurrency 1 and 16"
  "$SERVE" --model "$JARVIS_TEST_MODEL" --device cuda:0 --port 8790 >"$RES/serve_gpu.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 120); do
    curl -sf http://127.0.0.1:8790/health >/dev/null 2>&1 && break
    kill -0 "$SERVE_PID" 2>/dev/null || break  # it exited: no use waiting the full minute
    sleep 0.5
  done
  curl -s http://127.0.0.1:8790/v1/completions -H 'Content-Type: application/json' \
    -d '{"prompt": "The capital of France is", "max_tokens": 16, "temperature": 0}' || status=1
  echo
  for c in 1 16; do
    timeout 180 "$LOADGEN" --base-url http://127.0.0.1:8790/v1 -n $((c * 4)) --concurrency $c --input-len 128 \
      --output-len 64 --json "$RES/serve_gpu_c$c.json" 2>&1 | tail -25 || status=1
  done
  kill "$SERVE_PID" 2>/dev/null; wait "$SERVE_PID" 2>/dev/null
  tail -5 "$RES/serve_gpu.log"
fi

# ---- mixed CPU/GPU pipeline ring (tests/gpu/mixed_ring_test.py) ----
# jarvis-serve --ranks 3 --device cuda:0,cpu,cuda:0 (UCX workers and inproc threads) against the
# CPU ring: every greedy token at f32, every token up to the first close call at f16; rank 0 samples on
# cuda:0, and at f32 also with --device-sampling off (same tokens).
if [ -n "${SERVE:-}" ] && [ -n "${JARVIS_TEST_MODEL:-}" ] && section serve 90; then
  step "mixed CPU/GPU ring: --ranks 3 --device cuda:0,cpu,cuda:0 against the CPU ring"
  JARVIS_BIN_DIR=$BUILD/bin JARVIS_SOURCE_DIR=$ROOT timeout "$(cap 400)" python3 "$ROOT/tests/gpu/mixed_ring_test.py" 2>&1 |
    tail -20
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
# ---- end mixed ring ----

if [ -n "$BENCH" ] && section bench 30; then
  step "attention benchmark"
  timeout "$(cap 120)" "$BENCH" 2>&1 | tee "$RES/attention_bench.log"
fi

# ---- layer benchmark (jarvis-gpu-layer-bench) ----
# Quick sizes (about a minute): layer kernels and decode GEMMs at SmolLM2 and 7B-class shapes,
# then whole decode steps of synthetic models with CUDA graphs off and on. The table goes into
# attention_bench.log ($OUT returns 8 files at most), the JSON into layer_bench.json.
if [ -n "$LAYER_BENCH" ] && section bench 60; then
  step "layer benchmark (--quick)"
  { echo; echo "=== jarvis-gpu-layer-bench --quick"; } >>"$RES/attention_bench.log"
  OUT=$RES timeout "$(cap 180)" "$LAYER_BENCH" --quick 2>&1 | tee -a "$RES/attention_bench.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
fi
# ---- end layer benchmark ----

step "done: status $status"
# ---- results bundle: the device tool brings back at most 8 files from $OUT ----
# A full run writes more (build, test, sanitizer, serving and benchmark logs): past 8, all but
# run_all.log (still being written) go into gpu_results.tgz, extracted on the dev machine with
# `tar xzf gpu_results.tgz`.
if [ -n "${OUT:-}" ] && [ "$(find "$RES" -maxdepth 1 -type f | wc -l)" -gt 8 ]; then
  mapfile -t extra < <(cd "$RES" && find . -maxdepth 1 -type f ! -name run_all.log -printf '%P\n' | sort)
  if tar czf "$RES/gpu_results.tgz.part" -C "$RES" "${extra[@]}"; then
    (cd "$RES" && rm -f "${extra[@]}") && mv "$RES/gpu_results.tgz.part" "$RES/gpu_results.tgz"
    echo "results: run_all.log and gpu_results.tgz (${#extra[@]} files: ${extra[*]})"
  fi
fi
# ---- end results bundle ----
exit $status
