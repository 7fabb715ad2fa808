"""Resident memory of real processes on the default model (SmolLM2-135M-Instruct Q4_1, 94 MiB):
weights held as the file stores them, each rank of a ring only its share (issue 10).

Expectations come from the `gguf` package's tensor table (bytes of the tensors a rank holds), not
from the engine. The bounds are deliberately generous (regression guards, not measurements): the
issue's targets are file + KV + 100 MiB for one rank and share + KV + 60 MiB per rank of three;
these fail only past +150 MiB / +100 MiB, while a return to float32 weights would add 400+ MiB to
one rank and ~120-260 MiB to each rank of three. KV pages are allocated but only the ones written
become resident; the runs here write a few blocks, so KV is bounded by what they touch.

What is counted is the memory a process takes beyond the same binary started with `--help`: a build
with the CUDA backend maps cuBLAS/cudart into every process, about 215 MiB resident before any model
is touched even with no GPU (a CPU-only build: 4 MiB). That is the binary's cost, not the model's,
and it is reported beside the figures."""
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")

from serve_fixture import MODEL, Server, requires_server  # noqa: E402

BIN = Path(os.environ.get("JARVIS_BIN_DIR", "build/bin"))
MIB = 1 << 20


def tensor_bytes():
    """{name: bytes the loader holds}: a matrix as stored, a vector as float32."""
    r = gguf.GGUFReader(str(MODEL))
    return {t.name: int(t.n_bytes) if len(t.shape) >= 2 else 4 * int(t.n_elements) for t in r.tensors}


def share_bytes(t, layers, embedding, head):
    total = sum(b for name, b in t.items() if any(name.startswith(f"blk.{l}.") for l in layers))
    tied = "output.weight" not in t
    if embedding or (head and tied):
        total += t["token_embd.weight"]
    if head:
        total += t["output_norm.weight"] + t.get("output.weight", 0)
    return total


def baseline_rss(binary):
    """Peak RSS of `binary --help`: the process with its libraries loaded and nothing else."""
    p = subprocess.Popen([str(BIN / binary), "--help"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(p.pid, 0)
    return usage.ru_maxrss * 1024


def kv_bytes(tokens, layers):
    """K and V of `tokens` positions (rounded up to 16-token pages) over `layers` layers, float32."""
    pages = -(-tokens // 16)
    return 2 * 4 * pages * 16 * 3 * 64 * layers


@pytest.mark.skipif(not (BIN / "jarvis-cli").exists(), reason="jarvis-cli not built")
def test_one_rank_cli_peak_rss_is_about_the_file():
    r = subprocess.run([str(BIN / "jarvis-cli"), "-m", str(MODEL), "-t", "2", "-p", "hi", "-n", "8"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    peak = float(re.search(r"^peak RSS: ([0-9.]+) MiB$", r.stderr, re.M).group(1)) * MIB
    base = baseline_rss("jarvis-cli")
    held = share_bytes(tensor_bytes(), range(30), True, True)
    file_size = MODEL.stat().st_size
    print(f"jarvis-cli peak RSS {peak / MIB:.1f} MiB ({base / MIB:.1f} MiB of it the binary's own); "
          f"weights held {held / MIB:.1f} MiB, file {file_size / MIB:.1f} MiB")
    assert held <= file_size
    assert peak - base <= file_size + kv_bytes(16, 30) + 150 * MIB


def children(pid):
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def status_kb(pid, key):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


def with_marks(marks):
    def apply(f):
        for m in marks:
            f = m(f)
        return f
    return apply


@with_marks(requires_server)
def test_three_ranks_each_hold_their_share():
    t = tensor_bytes()
    shares = [share_bytes(t, range(0, 10), True, True), share_bytes(t, range(10, 20), False, False),
              share_bytes(t, range(20, 30), False, False)]
    with Server("--ranks", "3", "--split", "10,10,10", "--threads", "1", "--worker-threads", "1") as s:
        status, body = s.post_json("/v1/completions", {"prompt": "The capital of France is", "max_tokens": 8,
                                                       "temperature": 0})
        assert status == 200, body
        workers = sorted(children(s.proc.pid), key=lambda p: int(re.search(
            r"--rank\x00(\d+)", Path(f"/proc/{p}/cmdline").read_text()).group(1)))
        assert len(workers) == 2, workers
        hwm = [status_kb(p, "VmHWM") * 1024 for p in [s.proc.pid] + workers]
    base = [baseline_rss("jarvis-serve")] + 2 * [baseline_rss("jarvis-worker")]
    for rank, (h, b, share) in enumerate(zip(hwm, base, shares)):
        print(f"rank {rank}: VmHWM {h / MIB:.1f} MiB ({b / MIB:.1f} MiB of it the binary's own), "
              f"share of the file {share / MIB:.1f} MiB")
    hwm = [h - b for h, b in zip(hwm, base)]
    # Rank 0 also runs the HTTP server, tokenizer and scheduler; its bound is the one-rank one.
    assert hwm[0] <= shares[0] + kv_bytes(32, 10) + 150 * MIB
    for h, share in zip(hwm[1:], shares[1:]):
        assert h <= share + kv_bytes(32, 10) + 100 * MIB
