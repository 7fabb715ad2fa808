#!/usr/bin/env bash
# Run on the dev machine (Debian 12) before a GPU lease. The GPU machines have nvcc, CMake, ninja
# and python3 but none of the project's C++ dependencies, and reach no package registry, so this
# fills .gpu-deps/ (ignored by git) with what benchmarks/gpu/run_all.sh needs there for the full
# CMake build (jarvis-serve, jarvis-worker, jarvis-bench, every GPU test):
#   .gpu-deps/sysroot/  Debian 12 packages unpacked with `dpkg -x` (never installed, never into /):
#                       UCX, prometheus-cpp (+ civetweb, zlib, curl: its CMake config checks them),
#                       cpp-httplib (+ OpenSSL headers, brotli, zlib), CLI11, nlohmann_json,
#                       GoogleTest (static libraries), pkgconf; docs and the other static libraries
#                       removed, and OpenSSL's runtime (5 MB: every image with python3 has
#                       libssl.so.3). run_all.sh points CMake and pkg-config at it, and the
#                       loader at its runtime/ folder.
#                       Binaries linked against Debian 12 libraries run on the GPU image's newer glibc.
#   .gpu-deps/smollm2-<N>l.gguf  the default model cut to N layers (scripts/truncate_gguf.py).
# A run carries at most 64 MiB (tracked files + carried paths): the script prints the total and
# fails when it is over. Then call the device tool with carry [".gpu-deps"] and
# `bash benchmarks/gpu/run_all.sh` (csrc/cuda/README.md, "First checks on a GPU machine").
#   LAYERS=8 (default) model layers; JARVIS_PYTHON the Python with gguf; $1 the model.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PY=${JARVIS_PYTHON:-/work/main/.venv/bin/python}
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
LAYERS=${LAYERS:-8}
DEPS=$ROOT/.gpu-deps
SYSROOT=$DEPS/sysroot

# Runtime libraries are named with their -dev package: CMake's find_library and the linker need
# the real files behind the .so links, and the GPU image may lack any of them.
PACKAGES=(
  libucx-dev libucx0 libnuma1 libibverbs1 librdmacm1
  prometheus-cpp-dev libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libprometheus-cpp-push1.0
  civetweb libcivetweb-dev libcivetweb1 zlib1g-dev zlib1g libcurl4-openssl-dev libcurl4
  libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1 libssl-dev libssl3
  libcli11-dev nlohmann-json3-dev libgtest-dev
  pkgconf pkgconf-bin libpkgconf3
)

# Old layout (before the sysroot): GoogleTest and nlohmann copies at the top.
rm -rf "$DEPS/googletest" "$DEPS/include"
if [ ! -f "$SYSROOT/.complete" ]; then
  rm -rf "$SYSROOT"
  debs=$(mktemp -d)
  chmod 755 "$debs"  # apt-get download drops privileges to _apt where it can
  (cd "$debs" && apt-get download "${PACKAGES[@]}" >/dev/null) || {
    echo "apt-get download failed: run 'apt-get update' first" >&2; exit 1; }
  mkdir -p "$SYSROOT"
  for f in "$debs"/*.deb; do dpkg -x "$f" "$SYSROOT"; done
  ls "$debs" >"$SYSROOT/PACKAGES.txt"
  rm -rf "$debs"
  # What neither CMake nor the build reads: documentation, and static libraries (we link shared).
  rm -rf "$SYSROOT"/usr/share/{doc,man,lintian,aclocal}
  find "$SYSROOT" -name '*.a' ! -name 'libgtest*.a' ! -name 'libgmock*.a' -delete
  # OpenSSL 3 (same soname on Debian 12 and Ubuntu 22.04+) comes from the image: only cpp-httplib
  # needs it, at link and run time; nothing looks for it at configure time. Its headers stay.
  rm -f "$SYSROOT"/usr/lib/x86_64-linux-gnu/lib{ssl,crypto}.so*
  rm -rf "$SYSROOT"/usr/lib/x86_64-linux-gnu/{engines-3,ossl-modules}
  # Absolute links (libz.so -> /lib/...) would point into the machine's own root: make them
  # relative inside the sysroot. Then drop links left dangling by the removals above.
  find "$SYSROOT" -type l -lname '/*' | while read -r l; do
    ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$SYSROOT$(readlink "$l")")" "$l"
  done
  find "$SYSROOT" -xtype l -delete
  # runtime/: links to the libraries our binaries (and pkgconf) load, the only folder run_all.sh
  # puts on LD_LIBRARY_PATH. Not the whole lib folder: its libcurl (there for prometheus-cpp's
  # CMake config alone) and zlib would shadow the image's for curl and python3 (Debian 12's
  # libcurl needs sonames a newer image lacks, libldap-2.5 say).
  mkdir -p "$SYSROOT/runtime"
  for so in libucp.so.0 libuct.so.0 libucs.so.0 libucm.so.0 libucs_signal.so.0 libnuma.so.1 libibverbs.so.1 \
            librdmacm.so.1 libprometheus-cpp-core.so.1.0 libcpp-httplib.so.0.11 libbrotlicommon.so.1 \
            libbrotlidec.so.1 libbrotlienc.so.1 libpkgconf.so.3; do
    [ -e "$SYSROOT/usr/lib/x86_64-linux-gnu/$so" ] || { echo "missing $so in the sysroot" >&2; exit 1; }
    ln -sfn "../usr/lib/x86_64-linux-gnu/$so" "$SYSROOT/runtime/$so"
  done
  touch "$SYSROOT/.complete"
fi

out=$DEPS/smollm2-${LAYERS}l.gguf
for old in "$DEPS"/*.gguf; do [ -f "$old" ] && [ "$old" != "$out" ] && rm -f "$old"; done
[ -f "$out" ] || "$PY" scripts/truncate_gguf.py "$MODEL" "$out" --layers "$LAYERS"

deps_b=$(du -sb "$DEPS" | cut -f1)
tracked_b=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
untracked_b=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
total=$((deps_b + tracked_b + ${untracked_b:-0}))
limit=$((64 * 1024 * 1024))
echo ".gpu-deps: $deps_b bytes (sysroot $(du -sb "$SYSROOT" | cut -f1), model $(stat -c %s "$out"));" \
     "tracked $tracked_b, untracked ${untracked_b:-0}; total $total of $limit a run carries"
if [ "$total" -gt "$limit" ]; then
  echo "over the carry limit: use fewer layers (LAYERS=6 $0)" >&2
  exit 1
fi
