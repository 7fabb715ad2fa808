#!/usr/bin/env bash
# UCX round-trip latency between two processes on this host, per transport selection and
# rendezvous threshold (the "-" columns keep UCX's defaults). Usage: benchmarks/transport_latency.sh [BUILD_DIR]
# Each process is pinned to its own core so the numbers are not two spinning pollers sharing one.
set -euo pipefail
BIN=${1:-build}/bin/jarvis_transport_peer
COUNT=${COUNT:-5000}
port=$((42000 + RANDOM % 1000))
for tls in - tcp; do
  for rndv in - 256k; do
    for bytes in 8 4096 16384 65536; do
      port=$((port + 1))
      taskset -c 0 "$BIN" serve $port $rndv $tls &
      server=$!
      printf 'tls=%-3s rndv_thresh=%-4s ' "$tls" "$rndv"
      taskset -c 1 "$BIN" rtt 127.0.0.1 $port $bytes "$COUNT" $rndv $tls
      wait $server
    done
  done
done
