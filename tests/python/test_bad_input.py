"""Hundreds of malformed or hostile requests -- broken JSON, wrong types for every parameter, huge
numbers, invalid UTF-8, deep nesting, 10 MB bodies, unknown endpoints and methods, header garbage,
slowloris connections -- over raw sockets and http.client. Each gets a 4xx with an OpenAI error
body (or, for bytes that are not HTTP, a closed connection); afterwards a normal request still
answers exactly as before and the process is alive."""
import http.client
import json
import socket
import threading
import time

import pytest

from serve_fixture import Server, requires_server

pytestmark = requires_server

REQUEST_TIMEOUT = 2  # --request-timeout-seconds: how long a client may take to send one request
SENT = {"n": 0}


@pytest.fixture(scope="module")
def server():
    s = Server("--request-timeout-seconds", str(REQUEST_TIMEOUT), "--http-threads", "48")
    yield s
    code, out = s.close()
    assert code == 0, out


@pytest.fixture(scope="module")
def baseline(server):
    return normal_answer(server)


def normal_answer(server):
    status, r = server.post_json("/v1/completions", {"prompt": "The capital of France is", "max_tokens": 6,
                                                     "temperature": 0})
    assert status == 200, r
    return r["choices"][0]["text"]


def check_error(status, body, want):
    SENT["n"] += 1
    assert status in want, (status, body[:300])
    err = json.loads(body)["error"]
    assert isinstance(err["message"], str) and err["message"] and "type" in err and "code" in err


def post_raw(server, path, body: bytes, want=(400,), headers=None):
    status, _, data = server.request("POST", path, body=body, headers=headers)
    check_error(status, data, want)


def raw_exchange(server, data: bytes, timeout=10.0):
    """Sends bytes on a fresh socket; returns what comes back until the server closes (or timeout)."""
    SENT["n"] += 1
    with socket.create_connection((server.host, server.port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may close early; what it answered is still readable
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and b"Content-Length" in out:
                head, _, rest = out.partition(b"\r\n\r\n")
                n = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                if len(rest) >= n:
                    break
        return out


BROKEN_JSON = [
    b"{", b"}", b"{{}", b"[", b"nul", b"{\"prompt\": }", b"{\"prompt\" \"x\"}", b"{'prompt': 'x'}",
    b"{\"prompt\": \"x\",}", b"{\"prompt\": \"x\"", b"\"just a string\"", b"42", b"[]", b"null", b"true",
    b"{\"prompt\": \"unterminated}", b"{\"prompt\": \"bad escape \\q\"}", b"{\"prompt\": \"\\ud800\"}",
    b"{\"prompt\": NaN}", b"{\"prompt\": Infinity}", b"{\"max_tokens\": 1e400, \"prompt\": \"x\"}",
    b"{\"max_tokens\": -1e400, \"prompt\": \"x\"}", b"\x00\x01\x02", b" ", b"{\"a\":1}{\"b\":2}",
    b"{\"prompt\": \"x\"} trailing", b"{\"prompt\": 01}", b"{\"prompt\": .5}",
    b"{\"prompt\": \"x\" /* comment */}",
]
INVALID_UTF8 = [b"\xff", b"{\"prompt\": \"\xc3\"}", b"{\"prompt\": \"\xe2\x82\"}", b"{\"prompt\": \"\xed\xa0\x80\"}",
                b"{\"prompt\": \"\xf8\x88\x80\x80\x80\"}", b"{\"prompt\": \"\xc0\xaf\"}", b"{\"x\xfe\": 1}",
                b"{\"prompt\": \"ok\"}\x80"]


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"])
def test_broken_json_and_utf8(server, path):
    for body in BROKEN_JSON + INVALID_UTF8:
        post_raw(server, path, body)
    post_raw(server, path, b"")  # empty body


BAD_VALUES = {
    # parameter: values that must each be refused (400)
    "prompt": [5, 1.5, True, {}, [], [None], [[]], [1, "a"], ["a", 1], [-1], [2**40], [[1], "a"], {"a": 1}],
    "max_tokens": ["16", -1, 1.5, True, [], {}, 10**30, -10**30, 2**63, 1e300],
    "temperature": ["0", -0.1, 2.01, True, [], 1e308, -1e308],
    "top_p": [0, -1, 1.01, "1", False, []],
    "top_k": [-2, "5", 1.5, [], 2**40],
    "min_p": [-0.1, 1.5, "0.1", None and 0 or [], {}],
    "seed": ["1", 1.5, [], {}, 2**64, -2**64, True],
    "stop": [5, [5], [""], "", [None], {}, ["a"] * 17, True],
    "presence_penalty": [2.5, -2.5, "1", []],
    "frequency_penalty": [2.5, -2.5, "1", {}],
    "repetition_penalty": [0, -1, "1", []],
    "n": [0, -1, 129, "2", 1.5, [], 10**20],
    "logprobs": [-1, 21, "1", 1.5, [], 10**10],
    "echo": ["yes", 1, [], {}],
    "stream": ["true", 1, [], {}],
    "stream_options": ["x", 5, []],
    "ignore_eos": ["no", 0],
    "model": [5, [], {}, True],
    "user": [5, [], {}],
    "logit_bias": [{"1": 5}],
    "suffix": ["tail"],
    "best_of": [3, 0],
}


def test_wrong_types_and_values_completions(server):
    for field, values in BAD_VALUES.items():
        for v in values:
            body = {"prompt": "hi", "max_tokens": 1, field: v}
            status, _, data = server.request("POST", "/v1/completions", body=body)
            check_error(status, data, (400,) if field != "model" else (400, 404))
    # stream_options without stream, max_tokens past the context, an empty prompt
    for body in ({"prompt": "hi", "stream_options": {"include_usage": True}},
                 {"prompt": "hi", "max_tokens": 10**6},
                 {"prompt": ""}, {"prompt": []}, {"prompt": [[]]}, {"max_tokens": 1}):
        status, _, data = server.request("POST", "/v1/completions", body=body)
        check_error(status, data, (400,))


BAD_MESSAGES = [
    None, "hi", [], {}, [None], ["hi"], [{}], [{"role": "user"}], [{"content": "hi"}],
    [{"role": 5, "content": "hi"}], [{"role": "wizard", "content": "hi"}], [{"role": "tool", "content": "x"}],
    [{"role": "user", "content": 5}], [{"role": "user", "content": {"text": "x"}}],
    [{"role": "user", "content": [5]}], [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}],
    [{"role": "user", "content": [{"type": "text"}]}], [{"role": "user", "content": [{"text": "x"}]}],
    [{"role": "user", "content": [{"type": "text", "text": 5}]}], [{"role": "user", "content": None}],
]


def test_bad_chat_messages(server):
    for messages in BAD_MESSAGES:
        body = {"max_tokens": 1}
        if messages is not None:
            body["messages"] = messages
        status, _, data = server.request("POST", "/v1/chat/completions", body=body)
        check_error(status, data, (400,))
    for extra in ({"top_logprobs": 2}, {"logprobs": "yes"}, {"top_logprobs": 50, "logprobs": True},
                  {"tools": [{"type": "function"}]}, {"response_format": {"type": "json_object"}},
                  {"max_completion_tokens": 0}, {"n": 1000}):
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, **extra}
        status, _, data = server.request("POST", "/v1/chat/completions", body=body)
        check_error(status, data, (400,))


def test_deep_nesting_and_huge_bodies(server):
    for depth in (33, 1000, 100000):
        post_raw(server, "/v1/completions", b"[" * depth + b"]" * depth)
        post_raw(server, "/v1/completions", b'{"prompt": ' + b"[" * depth + b"]" * depth + b"}")
        post_raw(server, "/v1/completions", b'{"a":' * depth + b"1" + b"}" * depth)
    ten_mb = b'{"prompt": "' + b"a" * (10 << 20) + b'"}'
    for _ in range(3):
        post_raw(server, "/v1/completions", ten_mb, want=(413,))
    # chunked, no Content-Length: the limit applies while reading
    data = raw_exchange(server, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                        b"".join(b"100000\r\n" + b"a" * 0x100000 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    # a Content-Length that lies (claims 10 MB)
    data = raw_exchange(server, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n{}")
    assert data.startswith(b"HTTP/1.1 413"), data[:200]


def test_unknown_endpoints_and_methods(server):
    for method, path, want in [("GET", "/", 404), ("GET", "/v2/completions", 404), ("POST", "/v1/embeddings", 404),
                               ("GET", "/v1/completions", 405), ("PUT", "/v1/completions", 404),
                               ("DELETE", "/v1/chat/completions", 404), ("POST", "/v1/models", 405),
                               ("POST", "/health", 405), ("GET", "/tokenize", 405), ("PATCH", "/metrics", 404),
                               ("GET", "/v1/models/unknown", 404), ("GET", "/../../etc/passwd", 404),
                               ("GET", "/v1/completions/../models/x", 404), ("OPTIONS", "/v1/completions", 404)]:
        status, _, data = server.request(method, path)
        check_error(status, data, (want, 404, 405) if method in ("PUT", "DELETE", "PATCH", "OPTIONS") else (want,))


GARBAGE = [
    b"\r\n\r\n", b"GET\r\n\r\n", b"GET /health\r\n\r\n", b"GET /health HTTP/9.9\r\n\r\n", b"FOO /health HTTP/1.1\r\n\r\n",
    b"GET /health HTTP/1.1\r\nBadHeaderNoColon\r\n\r\n", b"GET /health HTTP/1.1\r\n: empty-name\r\n\r\n",
    b"GET " + b"/a" * 10000 + b" HTTP/1.1\r\n\r\n", b"GET /health HTTP/1.1\r\nX: " + b"y" * 20000 + b"\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)),  # a TLS ClientHello
    bytes(range(256)) * 4, b"POST /v1/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n{}",
    b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST /v1/completions HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\n\x1f\x8b\x08\x00",
    b"POST /v1/completions HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /health HTTP/1.1\r\n" + b"X-A: b\r\n" * 500 + b"\r\n",
    b"GET /health HTTP/1.1\n\n", b"GET /health?" + b"a=b&" * 3000 + b" HTTP/1.1\r\n\r\n",
    b"GET /%00%ff%fe HTTP/1.1\r\n\r\n", b"GET /health HTTP/1.1\r\nAuthorization: Bearer \xff\xfe\r\n\r\n",
]


def test_header_garbage(server):
    for data in GARBAGE:
        out = raw_exchange(server, data, timeout=REQUEST_TIMEOUT + 5)
        # Not HTTP: a 4xx answer or a closed connection, never a hang or a 5xx.
        assert out == b"" or out.startswith(b"HTTP/1.1 4") or out.startswith(b"HTTP/1.1 200"), (data[:60], out[:120])
    assert server.alive()


def test_slowloris_is_cut_off(server, baseline):
    socks = []
    for i in range(20):
        s = socket.create_connection((server.host, server.port), timeout=30)
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n")  # headers never end
        socks.append(s)
    stop = threading.Event()

    def dribble():  # one byte per half second keeps each connection "active" forever, if allowed
        while not stop.is_set():
            for s in socks:
                try:
                    s.send(b"X")
                except OSError:
                    pass
            time.sleep(0.5)

    t = threading.Thread(target=dribble)
    t.start()
    try:
        # Meanwhile a real client is served.
        assert normal_answer(server) == baseline
        # Each slow connection is closed once the request deadline passes.
        time.sleep(REQUEST_TIMEOUT + 1.5)
        closed = 0
        for s in socks:
            s.settimeout(3)
            try:
                while s.recv(4096):
                    pass
                closed += 1
            except (ConnectionResetError, BrokenPipeError):
                closed += 1
            except socket.timeout:
                pass
        SENT["n"] += len(socks)
        assert closed == len(socks)
    finally:
        stop.set()
        t.join()
        for s in socks:
            s.close()


def test_disconnect_right_after_request(server):
    for i in range(10):
        with socket.create_connection((server.host, server.port)) as s:
            body = json.dumps({"prompt": "Tell me a story", "max_tokens": 50, "stream": i % 2 == 0}).encode()
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        SENT["n"] += 1
    assert server.alive()


def test_still_serving_afterwards(server, baseline):
    assert SENT["n"] >= 200, SENT["n"]
    assert server.alive()
    assert normal_answer(server) == baseline
    status, h = server.health()
    assert status == 200 and h["status"] == "ok"
