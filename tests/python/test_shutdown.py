"""Clean endings: a client that disconnects mid-request has its sequence cancelled and its KV
blocks freed (seen in /health's engine stats); SIGTERM during a stream lets it finish (or ends it
cleanly with [DONE] once the grace period is over) and the process exits 0 within the grace."""
import http.client
import json
import socket
import time

import pytest

from serve_fixture import Server, requires_server, sse_events, wait_idle

pytestmark = requires_server

LONG = 4000  # tokens: far more than a test waits for, so only a cancel can end it early


def open_stream(server, body, path="/v1/completions"):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200
    return conn, r


class Events:
    """SSE data payloads of a streaming response, read as they arrive (chunked decoding intact)."""

    def __init__(self, response):
        self.r = response
        self.buf = b""

    def next(self):
        while b"\n\n" not in self.buf:
            data = self.r.read1(65536)
            assert data, "stream ended early"
            self.buf += data
        event, _, self.buf = self.buf.partition(b"\n\n")
        assert event.startswith(b"data: "), event
        return event[len(b"data: "):].decode()

    def rest(self):
        """Every remaining payload, up to the end of the response."""
        while True:
            data = self.r.read1(65536)
            if not data:
                break
            self.buf += data
        return sse_events(self.buf)


def wait_until(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


@pytest.fixture(scope="module")
def server():
    # No prefix caching: a finished sequence then holds no blocks at all, so "freed" is exact.
    s = Server("--no-prefix-caching")
    yield s
    code, out = s.close()
    assert code == 0, out


def test_disconnect_mid_stream_frees_kv(server):
    base = wait_idle(server)
    conn, r = open_stream(server, {"prompt": "Count to a thousand:", "max_tokens": LONG, "ignore_eos": True,
                                   "temperature": 0, "stream": True})
    events = Events(r)
    for _ in range(3):
        events.next()
    _, h = server.health()
    assert h["running"] == 1 and h["kv_blocks_used"] > base["kv_blocks_used"]
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    t0 = time.monotonic()
    assert wait_until(lambda: server.health()[1]["running"] == 0, 10), server.health()
    freed_after = time.monotonic() - t0
    h = server.health()[1]
    assert h["kv_blocks_used"] == base["kv_blocks_used"], h
    assert freed_after < 5  # cancelled, not run to LONG tokens


def test_disconnect_non_streaming_frees_kv(server):
    base = wait_idle(server)
    body = json.dumps({"prompt": "Write a long essay:", "max_tokens": LONG, "ignore_eos": True}).encode()
    s = socket.create_connection((server.host, server.port))
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body)
    assert wait_until(lambda: server.health()[1]["running"] == 1, 10)
    s.close()
    assert wait_until(lambda: server.health()[1]["running"] == 0, 10), server.health()
    assert server.health()[1]["kv_blocks_used"] == base["kv_blocks_used"]


def test_sigterm_lets_stream_finish():
    s = Server("--shutdown-grace-seconds", "20")
    try:
        conn, r = open_stream(s, {"prompt": "Once upon a time", "max_tokens": 40, "ignore_eos": True,
                                  "temperature": 0, "stream": True})
        events = Events(r)
        first = events.next()
        t0 = time.monotonic()
        s.proc.send_signal(15)
        rest = [first] + events.rest()
        assert rest[-1] == "[DONE]"
        chunks = [json.loads(e) for e in rest[:-1]]
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"  # ran to its full 40 tokens
        assert sum(1 for c in chunks if c["choices"][0]["text"]) >= 30
        # New work is refused while draining (or the port is already closed).
        try:
            status, _, _ = s.request("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 1}, timeout=5)
            assert status == 503
        except OSError:
            pass
        s.proc.wait(timeout=20)
        assert s.proc.returncode == 0, s.output()
        assert time.monotonic() - t0 < 20
    finally:
        s.kill()
        s.close()


def test_sigterm_grace_ends_long_stream_cleanly():
    grace = 2.0
    s = Server("--shutdown-grace-seconds", str(grace))
    try:
        conn, r = open_stream(s, {"messages": [{"role": "user", "content": "Talk forever."}], "max_tokens": LONG,
                                  "ignore_eos": True, "stream": True}, path="/v1/chat/completions")
        stream = Events(r)
        stream.next()
        t0 = time.monotonic()
        s.proc.send_signal(15)
        events = stream.rest()  # returns once the server ends the stream
        assert events[-1] == "[DONE]"
        last = json.loads(events[-2])
        assert last["choices"][0]["finish_reason"] == "abort"
        s.proc.wait(timeout=grace + 10)
        elapsed = time.monotonic() - t0
        assert s.proc.returncode == 0, s.output()
        assert elapsed < grace + 5, elapsed
    finally:
        s.kill()
        s.close()


def send_raw(server, path, body):
    s = socket.create_connection((server.host, server.port))
    data = json.dumps(body).encode()
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return s


def test_queue_full_is_429_and_clears():
    s = Server("--max-num-seqs", "1", "--max-waiting", "1")
    try:
        long = {"prompt": "Go on and on:", "max_tokens": LONG, "ignore_eos": True}
        a = send_raw(s, "/v1/completions", long)
        assert wait_until(lambda: s.health()[1]["running"] == 1, 10)
        b = send_raw(s, "/v1/completions", long)
        assert wait_until(lambda: s.health()[1]["waiting"] == 1, 10), s.health()
        status, _, body = s.request("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 1})
        assert status == 429, body
        assert json.loads(body)["error"]["type"] == "rate_limit_error"
        a.close()
        b.close()
        assert wait_until(lambda: s.health()[1]["running"] == 0 and s.health()[1]["waiting"] == 0, 10)
        status, _, _ = s.request("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 1})
        assert status == 200
    finally:
        s.kill()
        s.close()
