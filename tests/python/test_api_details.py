"""The small API details vLLM and OpenAI users rely on, through the official `openai` client and
raw HTTP against a real jarvis-serve: `created` is the request's time; a completion's implicit
max_tokens shrinks to the room the context leaves; --served-model-name; vLLM's extra parameters
are refused by name unless given their defaults; /metrics counts HTTP requests by route and status
and says whether the engine is up; CORS for --allowed-origins; /health says 503 while draining."""
import json
import re
import threading
import time

import openai
import pytest

from serve_fixture import Server, requires_server

pytestmark = requires_server

NAME = "jarvis-test-model"
ORIGIN = "http://ui.example"
KV_BLOCKS = 8  # with the default 16-token pages: a 128-token context, small enough to fill


@pytest.fixture(scope="module")
def server():
    s = Server("--served-model-name", NAME, "--allowed-origins", ORIGIN, "--kv-blocks", str(KV_BLOCKS))
    yield s
    code, out = s.close()
    assert code == 0, out


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0)


def test_served_model_name_replaces_the_file_name(server, client):
    assert [m.id for m in client.models.list().data] == [NAME]
    r = client.completions.create(model=NAME, prompt="Hi", max_tokens=2, temperature=0)
    assert r.model == NAME
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="SmolLM2-135M-Instruct-nope", prompt="Hi", max_tokens=2)


def test_created_is_the_request_time(client):
    started = client.models.retrieve(NAME).created  # the server's start
    time.sleep(1.5)
    before = int(time.time())
    r = client.completions.create(model=NAME, prompt="Hi", max_tokens=2, temperature=0)
    c = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    after = time.time()
    for created in (r.created, c.created):
        assert before <= created <= after, (before, created, after)
        assert created > started


def test_implicit_max_tokens_is_clamped_to_the_context(server, client):
    n_ctx = client.models.retrieve(NAME).model_extra["max_model_len"]
    assert n_ctx == KV_BLOCKS * 16
    prompt = [28] * (n_ctx - 5)  # token ids: exactly 5 positions left
    r = client.completions.create(model=NAME, prompt=prompt, temperature=0, extra_body={"ignore_eos": True})
    assert r.usage.prompt_tokens == n_ctx - 5
    assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"
    # An explicit max_tokens past the context is still the client's error.
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=NAME, prompt=prompt, max_tokens=16)
    assert e.value.body["code"] == "context_length_exceeded"


REFUSED = [  # (extra body, the field the 400 names); each is ignored silently by a server that drops it
    ({"min_tokens": 3}, "min_tokens"),
    ({"skip_special_tokens": False}, "skip_special_tokens"),
    ({"logit_bias": {"28": 5}}, "logit_bias"),
    ({"allowed_token_ids": [28, 29]}, "allowed_token_ids"),
    ({"bad_words": ["Paris"]}, "bad_words"),
    ({"guided_json": {"type": "object"}}, "guided_json"),
    ({"guided_choice": ["a", "b"]}, "guided_choice"),
]


@pytest.mark.parametrize("extra,param", REFUSED)
def test_vllm_extras_are_refused_by_name(client, extra, param):
    for call in (lambda: client.completions.create(model=NAME, prompt="Hi", max_tokens=2, extra_body=extra),
                 lambda: client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}],
                                                        max_tokens=2, extra_body=extra)):
        with pytest.raises(openai.BadRequestError) as e:
            call()
        assert e.value.body["param"] == param, e.value.body
        assert param in e.value.body["message"]


@pytest.mark.parametrize("extra,param", [({"continue_final_message": True}, "continue_final_message"),
                                         ({"echo": True}, "echo")])
def test_chat_only_extras_are_refused(client, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
                                       extra_body=extra)
    assert e.value.body["param"] == param


def test_vllm_extras_at_their_defaults_are_accepted(client):
    defaults = {"min_tokens": 0, "stop_token_ids": [], "include_stop_str_in_output": False,
                "skip_special_tokens": True, "allowed_token_ids": None, "bad_words": [], "logit_bias": {}}
    r = client.completions.create(model=NAME, prompt="Hi", max_tokens=2, temperature=0, extra_body=defaults)
    assert r.usage.completion_tokens >= 1
    c = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=2,
                                       extra_body={**defaults, "echo": False, "continue_final_message": False})
    assert c.choices[0].message.content is not None


def metric_value(text, name, **labels):
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_count_http_requests_by_route_and_status(server):
    before = server.get("/metrics")
    base_ok = metric_value(before, "jarvis:http_requests_total", route="/health", status="200") or 0
    base_404 = metric_value(before, "jarvis:http_requests_total", route="other", status="404") or 0
    for _ in range(3):
        assert server.health()[0] == 200
    assert server.request("GET", "/no/such/path")[0] == 404
    assert server.request("POST", "/v1/completions", body=b"{", headers={})[0] == 400
    text = server.get("/metrics")
    assert metric_value(text, "jarvis:http_requests_total", route="/health", status="200") == base_ok + 3
    assert metric_value(text, "jarvis:http_requests_total", route="other", status="404") == base_404 + 1
    assert metric_value(text, "jarvis:http_requests_total", route="/v1/completions", status="400") >= 1
    assert metric_value(text, "jarvis:engine_up", model_name=NAME) == 1


def test_cors_preflight_and_headers(server):
    status, headers, _ = server.request("OPTIONS", "/v1/chat/completions", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "authorization" in headers["Access-Control-Allow-Headers"]
    status, headers, _ = server.request("GET", "/v1/models", headers={"Origin": ORIGIN})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ORIGIN
    # Another origin gets no CORS header (the browser then refuses), and its preflight a 403.
    status, headers, _ = server.request("GET", "/v1/models", headers={"Origin": "http://evil.example"})
    assert status == 200 and "Access-Control-Allow-Origin" not in headers
    assert server.request("OPTIONS", "/v1/models", headers={"Origin": "http://evil.example"})[0] == 403
    assert server.request("OPTIONS", "/v1/models")[0] == 405  # no Origin: not a preflight


def test_health_is_503_while_draining_after_sigterm():
    s = Server("--shutdown-grace-seconds", "30")
    try:
        import http.client
        conn = http.client.HTTPConnection(s.host, s.port, timeout=60)
        conn.request("POST", "/v1/completions",
                     json.dumps({"prompt": "Once upon a time", "max_tokens": 60, "ignore_eos": True, "stream": True}),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200 and r.readline().startswith(b"data: ")
        body = []
        reader = threading.Thread(target=lambda: body.append(r.read()))
        reader.start()
        s.proc.send_signal(15)
        time.sleep(0.3)
        status, h = s.health()
        assert status == 503 and h["status"] == "shutting_down", (status, h)
        status, err = s.post_json("/v1/completions", {"prompt": "hi", "max_tokens": 2})
        assert status == 503 and err["error"]["code"] == "shutting_down", err
        reader.join(60)
        assert body and b"[DONE]" in body[0]  # the in-flight stream finished
        assert s.proc.wait(30) == 0
    finally:
        s.close()


def test_stop_token_ids_end_the_sequence(server, client):
    full = client.completions.create(model=NAME, prompt="The capital of France is", max_tokens=8, temperature=0,
                                     extra_body={"ignore_eos": True})
    text = full.choices[0].text
    ids = server.post_json("/tokenize", {"prompt": text, "add_special_tokens": False})[1]["tokens"]
    assert len(ids) >= 4, (text, ids)
    stop_id = ids[2]
    r = client.completions.create(model=NAME, prompt="The capital of France is", max_tokens=8, temperature=0,
                                  extra_body={"ignore_eos": True, "stop_token_ids": [stop_id]})
    # Generation ends at the first sampled stop_id, without its text (even with ignore_eos).
    assert r.choices[0].finish_reason == "stop", r
    assert len(r.choices[0].text) < len(text) and text.startswith(r.choices[0].text), (r.choices[0].text, text)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=NAME, prompt="Hi", max_tokens=2, extra_body={"stop_token_ids": [10 ** 8]})
    assert e.value.body["param"] == "stop_token_ids"


def test_scoring_a_prompt_records_no_generated_token_and_no_ttft(server, client):
    def counts():
        text = server.get("/metrics")
        return (metric_value(text, "jarvis:generation_tokens_total"),
                metric_value(text, "jarvis:time_to_first_token_seconds_count"),
                metric_value(text, "jarvis:prompt_tokens_total"))
    gen0, ttft0, prompt0 = counts()
    r = client.completions.create(model=NAME, prompt="Score this prompt please", max_tokens=0, echo=True,
                                  logprobs=0)
    assert r.usage.completion_tokens == 0
    gen1, ttft1, prompt1 = counts()
    assert (gen1, ttft1) == (gen0, ttft0)
    assert prompt1 == prompt0 + r.usage.prompt_tokens


def test_completion_logprobs_keep_the_bytes_of_partial_characters(client):
    prompt = "Pizza 🍕, sushi 🍣 and 日本語 ok"
    r = client.completions.create(model=NAME, prompt=prompt, max_tokens=0, echo=True, logprobs=0)
    lp = r.choices[0].logprobs
    raw = prompt.encode()
    assert any(t.startswith("bytes:") for t in lp.tokens), lp.tokens  # the case under test occurs
    pos = 0
    for token, offset in zip(lp.tokens, lp.text_offset):
        if token.startswith("bytes:"):
            piece = bytes(int(h, 16) for h in token[len("bytes:"):].split("\\x")[1:])
            assert piece, token
        else:
            piece = token.encode()
        assert raw[pos:pos + len(piece)] == piece, (token, raw[pos:pos + 8])
        # text_offset: the character (Python index into the text) the token's first byte is in.
        assert offset == len(raw[:pos].decode("utf-8", "ignore")), (token, offset)
        pos += len(piece)
    assert pos == len(raw)


def test_include_stop_str_in_output(client):
    full = client.completions.create(model=NAME, prompt="The capital of France is", max_tokens=8, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    words = full.split()
    assert len(words) >= 2, full
    stop = words[1]  # a stop string that occurs in the greedy text
    cut = full[:full.index(stop)]
    r = client.completions.create(model=NAME, prompt="The capital of France is", max_tokens=8, temperature=0,
                                  stop=[stop], extra_body={"ignore_eos": True}).choices[0]
    assert (r.text, r.finish_reason) == (cut, "stop")
    r = client.completions.create(model=NAME, prompt="The capital of France is", max_tokens=8, temperature=0,
                                  stop=[stop], extra_body={"ignore_eos": True,
                                                           "include_stop_str_in_output": True}).choices[0]
    assert (r.text, r.finish_reason) == (cut + stop, "stop")
