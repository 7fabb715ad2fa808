"""The served path per transport and with shaped links.
- `--transport inproc` (worker ranks as threads over in-process links) gives greedy outputs
  token-identical to one rank, like the UCX processes of test_ranks.py (same workload).
- `--link-delay ...` makes every step of the ring slower by the sum of its hops' delays, each hop
  shaped once by its sender (rank 0 its link to rank 1, each worker the link to the next rank);
  a malformed spec is refused before anything loads."""
import subprocess
import time

from serve_fixture import BIN, MODEL, Server, requires_server
from test_ranks import COMMON, run_workload

pytestmark = requires_server


def test_inproc_matches_one_rank():
    with Server(*COMMON) as one:
        reference = run_workload(one)
    s = Server("--ranks", "3", "--split", "5,20,5", "--transport", "inproc", *COMMON)
    try:
        out = s.output()
        assert "pipeline of 3 ranks ready" in out and "in a thread (in-process links)" in out, out
        assert "jarvis-worker pid" not in out, out
        solo, streams = run_workload(s)
        assert s.health()[1]["status"] == "ok"
    finally:
        code, out = s.close()
    assert solo == reference[0]
    for got, want in zip(streams, reference[1]):
        assert got[2] is None, got
        assert got == want
    assert code == 0, out


def one_token_seconds(server, n=4):
    """Wall times of n single-token greedy completions (one ring round each: the prefill step)."""
    times = []
    for i in range(n):
        t0 = time.monotonic()
        status, r = server.post_json("/v1/completions", {"prompt": f"Count to {i}:", "max_tokens": 1,
                                                          "temperature": 0})
        times.append(time.monotonic() - t0)
        assert status == 200, r
    return times


def test_link_delay_adds_one_delay_per_hop():
    # Each hop of the ring 0 -> 1 -> 2 -> 0 is shaped once, by its sender: 100 + 200 + 300 ms per
    # step. Different delays per link catch a rank shaping the wrong link (a missing hop, or one
    # counted twice, moves the sum by >= 100 ms) or both ends shaping one (1.2 s). The delays are
    # large so that a loaded 2-core machine, where a step's compute alone varies by tens of ms
    # (seen: 0.1-0.5 s per request under a load of 6), cannot hide or fake them.
    delays = "0-1:100ms,1-2:200ms,2-0:300ms"
    plain = Server("--ranks", "3", *COMMON)
    try:
        base = one_token_seconds(plain)
    finally:
        plain.close()
    shaped = Server("--ranks", "3", "--link-delay", delays, *COMMON)
    try:
        assert "rank 0 -> 1: shaped (delay 100.000 ms" in shaped.output(), shaped.output()
        slow = one_token_seconds(shaped)
    finally:
        shaped.close()
    # The shaper never delivers early, so 0.6 s is a hard lower bound on every shaped request
    # (a hop left unshaped or shaped with another link's delay would fall short of it). Above it,
    # compute on a loaded machine blurs the picture, so the upper bound compares the best
    # request of each server (least disturbed by neighbours) and only rules out gross errors:
    # 0.1 s of slack, while both ends shaping every link would add 0.6 s more.
    assert min(slow) >= 0.6, slow
    assert min(slow) - min(base) < 0.7, (base, slow)


def test_bad_link_spec_exits_before_loading():
    r = subprocess.run([str(BIN), "--model", str(MODEL), "--port", "0", "--ranks", "2", "--link-delay", "0-1:5parsecs"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r
    assert "5parsecs" in r.stderr and "jarvis-worker" not in r.stderr, r.stderr
