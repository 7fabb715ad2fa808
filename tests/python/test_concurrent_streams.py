"""32 concurrent streaming requests (threads), different prompts and lengths, greedy: every stream
completes, ends with [DONE], and carries exactly the text (and finish reason) the same request
gives when it runs alone."""
import http.client
import json
import threading

import pytest

from serve_fixture import Server, requires_server, sse_events, wait_idle

pytestmark = requires_server

N = 32
SUBJECTS = ["cats", "the sea", "Paris", "winter", "bicycles", "coffee", "the moon", "music"]


def request(i):
    chat = i % 2 == 0
    body = {"temperature": 0, "max_tokens": 4 + (i * 5) % 13, "stream": True}  # 4..16 tokens
    if chat:
        body["messages"] = [{"role": "user", "content": f"Write one sentence about {SUBJECTS[i % 8]}."}]
    else:
        body["prompt"] = f"Here is a short story about {SUBJECTS[i % 8]} number {i}:"
    return ("/v1/chat/completions" if chat else "/v1/completions"), body


def stream(server, path, body):
    """Text and finish reason of one streamed request, read as it arrives."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=300)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200, r.read()
        events = sse_events(r.read())
    finally:
        conn.close()
    assert events[-1] == "[DONE]"
    text, finish = "", None
    for e in events[:-1]:
        c = json.loads(e)["choices"][0]
        text += c.get("text") or (c.get("delta") or {}).get("content") or ""
        finish = c["finish_reason"] or finish
    return text, finish


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    code, out = s.close()
    assert code == 0, out


def test_concurrent_streams_match_solo_runs(server):
    reqs = [request(i) for i in range(N)]
    solo = [stream(server, path, body) for path, body in reqs]

    results = [None] * N
    errors = []
    start = threading.Barrier(N)

    def worker(i):
        try:
            start.wait()
            results[i] = stream(server, *reqs[i])
        except Exception as e:  # noqa: BLE001 - reported below with the request index
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    for i in range(N):
        assert results[i] is not None, f"request {i} did not finish"
        assert results[i] == solo[i], f"request {i}: concurrent {results[i]!r} != alone {solo[i]!r}"
        assert results[i][1] in ("stop", "length")
    h = wait_idle(server)
    assert h["running"] == 0 and h["waiting"] == 0
    assert server.alive()
