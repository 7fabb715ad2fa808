"""Per-rank and per-link metrics of `jarvis-serve --ranks 3`, scraped from its /metrics: every rank
(0, 1, 2) and every ring link (0-1, 1-2, 2-0, both ends) has its series; busy time and round trips
are positive; the bytes sent on a link grow with traffic by at least the hidden states the requests
must have moved (SmolLM2's hidden size 576, f32: 2304 bytes per token row, from the model card,
not from our code); every rank reports the same steps and tokens once the ring is idle."""
import re
import time

import pytest

from serve_fixture import Server, requires_server, wait_idle

pytestmark = requires_server

PIPELINE = ["--ranks", "3", "--threads", "1", "--worker-threads", "1"]
LINKS = ["0-1", "1-2", "2-0"]
HIDDEN_ROW_BYTES = 576 * 4
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} (\S+)$')
LABEL = re.compile(r'(\w+)="([^"]*)"')


def scrape(server):
    """{(name, frozenset(labels without model_name)): value} of every labelled sample."""
    out = {}
    for line in server.get("/metrics").splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = dict(LABEL.findall(m.group(2)))
        assert labels.pop("model_name", None), line  # every series carries the model's name
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return out


def get(metrics, name, **labels):
    return metrics.get((name, frozenset(labels.items())))


def complete(server, prompt, max_tokens):
    status, r = server.post_json("/v1/completions", {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
    assert status == 200, r
    return r["usage"]["prompt_tokens"], r["usage"]["completion_tokens"]


def stable_scrape(server, ready, timeout=30):
    """Scrapes until `ready(metrics)` holds and two scrapes a statistics round apart agree on the
    step counters (the ring is idle and every rank has reported since)."""
    deadline = time.monotonic() + timeout
    prev = None
    while True:
        m = scrape(server)
        steps = [get(m, "jarvis:stage_steps_total", rank=str(r)) for r in range(3)]
        if ready(m) and prev is not None and steps == prev and None not in steps and len(set(steps)) == 1:
            return m
        assert time.monotonic() < deadline, f"metrics not ready/stable: {sorted(m)}"
        prev = steps
        time.sleep(1.2)


def complete_set(m):
    for r in range(3):
        if not get(m, "jarvis:stage_busy_seconds_total", rank=str(r)):
            return False
    return all(get(m, "jarvis:link_rtt_seconds", link=link) for link in LINKS)


@pytest.fixture(scope="module")
def server():
    s = Server(*PIPELINE)
    try:
        yield s
    finally:
        code, out = s.close()
        assert code == 0, out


def test_series_for_every_rank_and_link(server):
    complete(server, "The capital of France is", 6)
    wait_idle(server)
    m = stable_scrape(server, complete_set)
    for r in map(str, range(3)):
        assert get(m, "jarvis:stage_busy_seconds_total", rank=r) > 0, r
        idle = get(m, "jarvis:stage_idle_seconds_total", rank=r)
        assert idle is not None and idle >= 0, r
        frac = get(m, "jarvis:stage_idle_fraction", rank=r)
        assert frac is not None and 0 <= frac <= 1, r
        assert get(m, "jarvis:stage_steps_total", rank=r) > 0, r
    for link in LINKS:
        for direction in ("tx", "rx"):
            assert get(m, "jarvis:link_bytes_total", link=link, direction=direction) > 0, (link, direction)
            assert get(m, "jarvis:link_messages_total", link=link, direction=direction) > 0, (link, direction)
        rtt = get(m, "jarvis:link_rtt_seconds", link=link)
        # Two local processes: far under a second even on a loaded machine; above zero always.
        assert 0 < rtt < 1, (link, rtt)
        assert 0 < get(m, "jarvis:link_rtt_min_seconds", link=link) <= rtt * 8, link
    # Only what exists: no rank 3, no link between non-neighbours.
    assert get(m, "jarvis:stage_busy_seconds_total", rank="3") is None
    assert get(m, "jarvis:link_bytes_total", link="0-2", direction="tx") is None


def test_link_bytes_grow_with_traffic(server):
    wait_idle(server)
    before = stable_scrape(server, complete_set)
    rows = 0
    for prompt in ("Once upon a time, in a land far away,", "def fibonacci(n):", "List three colors:"):
        p, g = complete(server, prompt, 8)
        rows += p + g - 1  # the last sampled token never goes round the ring
    wait_idle(server)
    after = stable_scrape(server, lambda m: complete_set(m) and get(m, "jarvis:stage_steps_total", rank="0") >
                          get(before, "jarvis:stage_steps_total", rank="0"))

    def grew(name, **labels):
        return get(after, name, **labels) - get(before, name, **labels)

    # Rows through the ring: prompt plus generated tokens but the last, per request (+1 each if a
    # request ended on an end-of-text token the usage does not count; fewer if prefix caching
    # skipped prompt rows). Links 0-1 and 1-2 carry each counted row's hidden state.
    tokens = grew("jarvis:stage_tokens_total", rank="0")
    assert 0 < tokens <= rows + 3, (tokens, rows)
    for r in ("1", "2"):
        assert grew("jarvis:stage_tokens_total", rank=r) == tokens, r
    for link in ("0-1", "1-2"):
        assert grew("jarvis:link_bytes_total", link=link, direction="tx") >= tokens * HIDDEN_ROW_BYTES, link
    # The last rank sends back only the sampled rows: at least one per step.
    steps = grew("jarvis:stage_steps_total", rank="0")
    assert grew("jarvis:link_bytes_total", link="2-0", direction="tx") >= steps * HIDDEN_ROW_BYTES
    for link in LINKS:
        assert grew("jarvis:link_messages_total", link=link, direction="tx") >= steps, link
        assert grew("jarvis:link_messages_total", link=link, direction="rx") >= steps, link
    for r in map(str, range(3)):
        assert grew("jarvis:stage_busy_seconds_total", rank=r) > 0, r


def test_shaped_links_show_their_delay_inproc_ranks():
    # A different one-way delay per link, so a series under the wrong link label shows; worker
    # ranks as threads (--transport inproc), so that path is measured too (the UCX processes are
    # above). The shaper delays the ping one way; the pong comes back unshaped: RTT >= delay. The
    # smallest of a few pings stays within 4 ms above it even on a loaded machine (measured:
    # +0.02-0.2 ms), less than the 5 ms between the links' delays.
    delays = {"0-1": 0.005, "1-2": 0.010, "2-0": 0.015}
    spec = ",".join(f"{link}:{int(d * 1000)}ms" for link, d in delays.items())
    with Server(*PIPELINE, "--transport", "inproc", "--link-delay", spec) as s:
        complete(s, "Hello", 2)

        def enough_pings(m):
            return complete_set(m) and all(get(m, "jarvis:link_rtt_seconds", link=link) >= d
                                           for link, d in delays.items())

        m = stable_scrape(s, enough_pings)
        for link, d in delays.items():
            rtt_min = get(m, "jarvis:link_rtt_min_seconds", link=link)
            assert d <= rtt_min < d + 0.004, (link, rtt_min)
