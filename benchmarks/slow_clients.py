"""Normal-request latency while N slowloris connections (a byte every 0.5 s, headers never end)
are open against a real jarvis-serve. Produces the slow-client figure in benchmarks/RESULTS.md.

  .venv/bin/python benchmarks/slow_clients.py --bin build/bin/jarvis-serve --count 1000 [--source 127.0.0.2]
      [-- extra jarvis-serve flags]

--source: the address the normal requests come from (the flood always comes from 127.0.0.1)."""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "python"))
from slow_clients import SlowClients, normal_latencies, summary  # noqa: E402


def start(binary, model, extra):
    log = tempfile.NamedTemporaryFile(prefix="slow-clients-", suffix=".log", delete=False)
    proc = subprocess.Popen([binary, "--model", model, "--port", "0", "--kv-cache-bytes", str(512 << 20), *extra],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for line in Path(log.name).read_text(errors="replace").splitlines():
            if "listening on http://" in line:
                return proc, int(line.rsplit(":", 1)[1])
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    sys.exit("jarvis-serve did not start:\n" + Path(log.name).read_text(errors="replace"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/bin/jarvis-serve")
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--source", default="127.0.0.1")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("extra", nargs="*", help="jarvis-serve flags (after --)")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, a.count + 200)), hard))
    proc, port = start(a.bin, a.model, a.extra)
    try:
        quiet = summary(normal_latencies("127.0.0.1", port, source=a.source, rounds=a.rounds))
        with SlowClients("127.0.0.1", port, a.count) as flood:
            time.sleep(1.0)  # the flood is established and dribbling
            lat = normal_latencies("127.0.0.1", port, source=a.source, rounds=a.rounds)
            states = flood.states()
        loaded = summary(lat)
        print(json.dumps({"slow_connections": a.count, "normal_from": a.source, "flags": a.extra,
                          "without_flood": quiet, "with_flood": loaded,
                          "statuses": sorted({s for _, _, s in lat}), "flood_connections": states}, indent=1))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
