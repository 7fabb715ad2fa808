"""Request framing over raw sockets against a real jarvis-serve: a refused request is answered once
and its connection closed (nothing behind it is read as a request: no smuggling behind a proxy);
a body without a length is 411 at once, an ambiguous length (two Content-Lengths, Content-Length
with chunked) or a negative one is 400 at once. Valid framings still work: chunked bodies,
"Expect: 100-continue" (curl), pipelined and keep-alive requests."""
import json
import re
import shutil
import socket
import subprocess
import time

import pytest

from serve_fixture import Server, requires_server

pytestmark = requires_server

ANSWER_WITHIN = 1.0  # s: "at once" (the request deadline these used to wait for is 10 s)
HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    code, out = s.close()
    assert code == 0, out


def exchange(server, data: bytes, timeout=15.0):
    """Sends `data` on a fresh connection; returns (every byte until the server closes, seconds)."""
    t0 = time.monotonic()
    with socket.create_connection((server.host, server.port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
    return out, time.monotonic() - t0


def statuses(raw: bytes):
    """The status codes of the responses in `raw`, in order."""
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]


def error_of(raw: bytes):
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])["error"]


def test_garbage_then_valid_request_is_one_400_and_close(server):
    out, dt = exchange(server, b"garbage\r\n" + HEALTH)
    assert statuses(out) == [400], out
    assert dt < ANSWER_WITHIN
    out, _ = exchange(server, b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n" + HEALTH)
    assert statuses(out) == [400], out


def test_post_without_length_is_411_at_once(server):
    out, dt = exchange(server, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n"
                               b'{"prompt": "hi"}')
    assert statuses(out) == [411], out
    assert dt < ANSWER_WITHIN, dt
    assert error_of(out)["code"] == "length_required"


@pytest.mark.parametrize("head", [
    b"Content-Length: 2\r\nContent-Length: 2\r\n",
    b"Content-Length: 2\r\nContent-Length: 40\r\n",
    b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n",
])
def test_ambiguous_length_is_400_at_once(server, head):
    out, dt = exchange(server, b"POST /tokenize HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n{}" + HEALTH)
    assert statuses(out) == [400], out
    assert dt < ANSWER_WITHIN, dt
    assert "ambiguous" in error_of(out)["message"]


def test_negative_content_length_is_400_not_413(server):
    out, dt = exchange(server, b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}")
    assert statuses(out) == [400], out
    assert dt < ANSWER_WITHIN
    assert "negative" in error_of(out)["message"]


def test_chunked_body_is_read(server):
    body = json.dumps({"prompt": "Hello world"}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:5], body[5:])) + b"0\r\n\r\n"
    out, _ = exchange(server, b"POST /tokenize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              b"Connection: close\r\n\r\n" + chunks)
    assert statuses(out) == [200], out
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["count"] == 2


def test_pipelined_requests_each_answered(server):
    tokenize = json.dumps({"prompt": "Hi"}).encode()
    data = (HEALTH + b"POST /tokenize HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(tokenize), tokenize)
            + b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out, _ = exchange(server, data)
    assert statuses(out) == [200, 200, 200], out


def test_keep_alive_connection_serves_many(server):
    import http.client
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        for _ in range(5):
            conn.request("GET", "/health")
            r = conn.getresponse()
            assert r.status == 200
            r.read()
        # An application-level 400 (bad JSON) keeps the connection: the request was framed correctly.
        conn.request("POST", "/tokenize", body=b"{", headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 400
        r.read()
        conn.request("GET", "/health")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_expect_100_continue(server):
    body = json.dumps({"prompt": "x " * 2000})
    r = subprocess.run(["curl", "-sS", "-i", "-H", "Expect: 100-continue", "-H", "Content-Type: application/json",
                        "--data-binary", body, f"{server.base_url}/tokenize"],
                       capture_output=True, timeout=30, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("HTTP/1.1 100 Continue"), r.stdout[:200]
    assert "HTTP/1.1 200" in r.stdout, r.stdout[:400]
    assert r.stdout.count("100 Continue") == 1
    assert json.loads(r.stdout.split("\n\n")[-1])["count"] > 1000  # text mode: CRLF read as LF
