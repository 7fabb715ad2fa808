"""The HTTP API driven by the real `curl` binary: SSE streaming framing, API key header, 413 for
bodies over the limit (with and without Expect: 100-continue, and chunked), /metrics and /health."""
import json
import shutil
import subprocess

import pytest

from serve_fixture import MODEL_NAME, Server, requires_server, sse_events

pytestmark = requires_server + [pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")]

KEY = "curl-secret"
MAX_BODY = 65536


@pytest.fixture(scope="module")
def server():
    s = Server("--max-body-bytes", str(MAX_BODY), api_key=KEY)
    yield s
    code, out = s.close()
    assert code == 0, out


def curl(server, path, *args, key=KEY, data=None, timeout=120):
    """Runs curl; returns (status, content_type, body bytes)."""
    cmd = ["curl", "-sS", "-N", "-o", "-", "-w", "\n%{http_code} %{content_type}", f"{server.base_url}{path}", *args]
    if key is not None:
        cmd += ["-H", f"Authorization: Bearer {key}"]
    if data is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    r = subprocess.run(cmd, input=data.encode() if isinstance(data, str) else data, capture_output=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr.decode()
    body, _, tail = r.stdout.rpartition(b"\n")
    code, _, ctype = tail.decode().partition(" ")
    return int(code), ctype, body


def test_stream_sse_framing(server):
    req = json.dumps({"model": MODEL_NAME, "messages": [{"role": "user", "content": "Say hello."}],
                      "max_tokens": 12, "temperature": 0, "stream": True})
    status, ctype, body = curl(server, "/v1/chat/completions", data=req)
    assert status == 200 and ctype.startswith("text/event-stream")
    assert body.endswith(b"data: [DONE]\n\n")
    events = sse_events(body)
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    # the same request without streaming gives the same text
    status, _, full = curl(server, "/v1/chat/completions", data=req.replace('"stream": true', '"stream": false'))
    assert status == 200 and json.loads(full)["choices"][0]["message"]["content"] == text


def test_completion_stream_with_usage(server):
    req = json.dumps({"prompt": "1, 2, 3,", "max_tokens": 5, "temperature": 0, "stream": True,
                      "stream_options": {"include_usage": True}})
    status, _, body = curl(server, "/v1/completions", data=req)
    events = sse_events(body)
    assert status == 200 and events[-1] == "[DONE]"
    usage = json.loads(events[-2])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 5


def test_api_key_header(server):
    req = json.dumps({"prompt": "hi", "max_tokens": 1})
    status, ctype, body = curl(server, "/v1/completions", key=None, data=req)
    assert status == 401 and ctype.startswith("application/json")
    assert json.loads(body)["error"]["code"] == "invalid_api_key"
    assert curl(server, "/v1/completions", key="wrong", data=req)[0] == 401
    assert curl(server, "/v1/completions", data=req)[0] == 200
    assert curl(server, "/v1/models", key=None)[0] == 401
    assert curl(server, "/health", key=None)[0] == 200


def test_body_over_limit_is_413(server):
    big = json.dumps({"prompt": "x" * (2 * MAX_BODY)})
    for extra in ([], ["-H", "Expect:"], ["-H", "Expect: 100-continue"], ["-H", "Transfer-Encoding: chunked"]):
        status, ctype, body = curl(server, "/v1/completions", *extra, data=big)
        assert status == 413, extra
        assert json.loads(body)["error"]["code"] == "request_too_large"
    # just under the limit is fine (and is a 400 only for its content)
    ok = json.dumps({"prompt": "hello", "user": "y" * (MAX_BODY - 100), "max_tokens": 1})
    assert curl(server, "/v1/completions", data=ok)[0] == 200
    assert server.alive()


def test_metrics_and_health(server):
    status, ctype, body = curl(server, "/metrics", key=None)
    assert status == 200 and ctype.startswith("text/plain") and "version=0.0.4" in ctype
    assert b"kv_cache_usage" in body
    status, ctype, body = curl(server, "/health", key=None)
    h = json.loads(body)
    assert status == 200 and h["status"] == "ok" and h["kv_blocks_total"] > 0
