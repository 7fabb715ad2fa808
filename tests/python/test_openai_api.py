"""The HTTP API driven by the official `openai` Python client against the real jarvis-serve on the
default model: chat, completions, streaming, stop, logprobs, echo, n, usage, errors, models,
tokenize/detokenize, API key. Token ids are checked against HF `tokenizers` built from the GGUF
vocabulary, chat prompts against jinja2 rendering the model's own template, and logprobs against
the NumPy reference forward pass (numpy_reference.py)."""
import json
import math

import numpy as np
import openai
import pytest

from serve_fixture import MODEL, MODEL_NAME, Server, hf_tokenizer, requires_server

pytestmark = requires_server

API_KEY = "test-key-123"
PARIS = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server():
    # The float32 reference path: these tests check the API against NumPy's float logprobs and a
    # greedy answer. The default path (weights as stored, 8-bit activations) moves logits by up to
    # ~1.6 on this model (tests/python/test_forward_reference.py checks it on its own terms) and
    # answers the France question as llama.cpp does on the same file ("L'Etoile, la Marseillaise").
    s = Server("--weights", "f32", api_key=API_KEY)
    yield s
    code, out = s.close()
    assert code == 0, out


@pytest.fixture(scope="module")
def client(server):
    # max_retries=0: a 429/503 must surface, not be retried away.
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=120)


def chat_template_ids(messages, add_generation_prompt=True):
    """Prompt ids as transformers would make them: jinja2 over the GGUF's template, HF tokenizer."""
    import jinja2
    from gguf import GGUFReader

    f = GGUFReader(str(MODEL)).fields["tokenizer.chat_template"]
    source = bytes(f.parts[f.data[0]]).decode("utf-8")
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    text = env.from_string(source).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                          bos_token="<|im_start|>", eos_token="<|im_end|>")
    return hf_tokenizer().encode(text).ids


def greedy_chat(client, messages=PARIS, **kw):
    return client.chat.completions.create(model=MODEL_NAME, messages=messages, temperature=0, **kw)


# ---- models, chat, completions ----

def test_models_list_and_retrieve(client):
    models = client.models.list().data
    assert [m.id for m in models] == [MODEL_NAME]
    assert client.models.retrieve(MODEL_NAME).id == MODEL_NAME
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_chat_capital_of_france(client):
    r = greedy_chat(client, max_tokens=40, logprobs=True)
    choice = r.choices[0]
    assert "Paris" in choice.message.content
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"  # the model ends its turn well before 40 tokens
    assert r.object == "chat.completion" and r.model == MODEL_NAME and r.id.startswith("chatcmpl-")
    # Usage: the prompt is the template rendered by jinja2 and tokenized by HF tokenizers; the
    # completion is the content tokens plus the end-of-turn token that ended it.
    assert r.usage.prompt_tokens == len(chat_template_ids(PARIS))
    content = choice.logprobs.content
    assert "".join(t.token for t in content) == choice.message.content
    assert r.usage.completion_tokens == len(content) + 1
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_completion_usage_and_length(client):
    prompt = "The capital of France is"
    r = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=5, temperature=0)
    assert r.object == "text_completion" and r.id.startswith("cmpl-")
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5
    assert r.usage.prompt_tokens == len(hf_tokenizer().encode(prompt).ids)
    assert "Paris" in r.choices[0].text


def test_token_id_prompts_equal_text_prompts(client):
    prompt = "The capital of France is"
    ids = hf_tokenizer().encode(prompt).ids
    by_text = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=6, temperature=0)
    by_ids = client.completions.create(model=MODEL_NAME, prompt=ids, max_tokens=6, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    batch = client.completions.create(model=MODEL_NAME, prompt=[prompt, "Water is made of"], max_tokens=6,
                                      temperature=0)
    assert [c.index for c in batch.choices] == [0, 1]
    assert batch.choices[0].text == by_text.choices[0].text
    assert batch.usage.completion_tokens == 12
    lists = client.completions.create(model=MODEL_NAME, prompt=[ids, ids], max_tokens=6, temperature=0)
    assert [c.text for c in lists.choices] == [by_text.choices[0].text] * 2


# ---- streaming ----

def test_chat_stream_equals_non_stream(client):
    full = greedy_chat(client, max_tokens=24)
    chunks = list(greedy_chat(client, max_tokens=24, stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [full.choices[0].finish_reason]
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == full.usage.model_dump()
    assert len({c.id for c in chunks}) == 1


def test_completion_stream_equals_non_stream(client):
    kw = dict(model=MODEL_NAME, prompt="Once upon a time", max_tokens=12, temperature=0)
    full = client.completions.create(**kw)
    chunks = list(client.completions.create(stream=True, **kw))
    assert "".join(c.choices[0].text for c in chunks) == full.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(getattr(c, "usage", None) is None for c in chunks)  # no include_usage: no usage chunk


# ---- stop, n, seeds ----

def test_stop_sequences(client):
    kw = dict(model=MODEL_NAME, prompt="List three colors: red,", max_tokens=16, temperature=0)
    text = client.completions.create(**kw).choices[0].text
    stop = text.strip()[2:5]  # a piece from inside the greedy continuation
    assert len(stop) == 3 and stop in text
    r = client.completions.create(stop=[stop, "never-appears-xyz"], **kw)
    assert r.choices[0].text == text[:text.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    single = client.completions.create(stop=stop, **kw)
    assert single.choices[0].text == r.choices[0].text


def test_n_choices_and_seed(client):
    kw = dict(model=MODEL_NAME, prompt="My favourite animal is", max_tokens=8, temperature=1.0, seed=1234, n=3,
              logprobs=0)
    a = client.completions.create(**kw)
    b = client.completions.create(**kw)
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert [c.text for c in a.choices] == [c.text for c in b.choices]  # seeded: reproducible
    assert len({c.text for c in a.choices}) > 1  # seed + i per choice: not three copies
    # Each choice's tokens are its logprobs entries, plus the end-of-text token when it stopped.
    per_choice = [len(c.logprobs.tokens) + (c.finish_reason == "stop") for c in a.choices]
    assert all(n <= 8 for n in per_choice)
    assert a.usage.completion_tokens == sum(per_choice)
    assert a.usage.prompt_tokens == len(hf_tokenizer().encode(kw["prompt"]).ids)  # counted once
    greedy = greedy_chat(client, max_tokens=10, n=2)
    assert greedy.choices[0].message.content == greedy.choices[1].message.content


def test_n_streaming_chat(client):
    chunks = list(greedy_chat(client, max_tokens=10, n=2, stream=True))
    texts = {0: "", 1: ""}
    for c in chunks:
        for ch in c.choices:
            texts[ch.index] += ch.delta.content or ""
    assert texts[0] == texts[1] == greedy_chat(client, max_tokens=10).choices[0].message.content


# ---- logprobs ----

@pytest.fixture(scope="module")
def reference():
    from numpy_reference import Reference
    return Reference(str(MODEL), dtype=np.float32)


def log_softmax(x):
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


# Our forward pass matches the float64 NumPy reference to 1e-5 of the largest logit (see
# test_forward_reference.py); the float32 reference used here adds rounding of the same order.
# log-softmax shifts by a log-sum-exp whose error is bounded by the largest logit error, so
# 2e-3 covers both with margin while a wrong position or token (errors of 0.1 and more) fails.
LOGPROB_TOL = 2e-3


def test_completion_logprobs_match_reference(client, reference):
    prompt = "The capital of France is"
    ids = hf_tokenizer().encode(prompt).ids
    r = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=4, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == 4 and "".join(lp.tokens) == r.choices[0].text
    assert all(len(t) == 3 for t in lp.top_logprobs)
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(4)]
    # Each generated token's logprob against the reference run over prompt + generated tokens.
    pieces = [hf_tokenizer().encode(t).ids for t in lp.tokens]
    assert all(len(p) == 1 for p in pieces), pieces  # each token's text is one token by itself
    gen_ids = [p[0] for p in pieces]
    ref = log_softmax(reference.forward(ids + gen_ids))
    for i, tok in enumerate(gen_ids):
        row = ref[len(ids) - 1 + i]
        assert int(row.argmax()) == tok  # greedy picked the reference's best token
        assert abs(lp.token_logprobs[i] - row[tok]) < LOGPROB_TOL
        best3 = np.argsort(row)[::-1][:3]
        want = {hf_tokenizer().decode([int(t)]): row[t] for t in best3}
        assert set(lp.top_logprobs[i]) == set(want)
        for k, v in lp.top_logprobs[i].items():
            assert abs(v - want[k]) < LOGPROB_TOL


def test_echo_logprobs_give_prompt_logprobs(client, reference):
    prompt = "Paris is the capital of France"
    ids = hf_tokenizer().encode(prompt).ids
    r = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=2, temperature=0, logprobs=2,
                                  echo=True)
    c = r.choices[0]
    assert c.text.startswith(prompt)
    lp = c.logprobs
    assert len(lp.tokens) == len(ids) + 2
    assert "".join(lp.tokens[:len(ids)]) == prompt
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None  # as OpenAI: nothing before it
    ref = log_softmax(reference.forward(ids))
    for i in range(1, len(ids)):
        assert abs(lp.token_logprobs[i] - ref[i - 1][ids[i]]) < LOGPROB_TOL, i
        assert len(lp.top_logprobs[i]) == 2
    # Scoring only (max_tokens 0, as lm-eval-harness asks): the prompt and nothing generated.
    s = client.completions.create(model=MODEL_NAME, prompt=prompt, max_tokens=0, echo=True, logprobs=0)
    assert s.choices[0].text == prompt and s.usage.completion_tokens == 0
    assert s.choices[0].logprobs.token_logprobs[1:] == pytest.approx(lp.token_logprobs[1:len(ids)], abs=1e-5)


def test_chat_logprobs_and_top_logprobs(client):
    r = greedy_chat(client, max_tokens=8, logprobs=True, top_logprobs=4)
    content = r.choices[0].logprobs.content
    assert content and "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.bytes == list(t.token.encode("utf-8"))
        assert len(t.top_logprobs) == 4
        assert t.top_logprobs[0].token == t.token  # greedy: the chosen token is the best one
        assert t.logprob == pytest.approx(t.top_logprobs[0].logprob)
        assert sum(math.exp(a.logprob) for a in t.top_logprobs) <= 1.0 + 1e-4
        assert [a.logprob for a in t.top_logprobs] == sorted((a.logprob for a in t.top_logprobs), reverse=True)
    plain = greedy_chat(client, max_tokens=8)
    assert plain.choices[0].logprobs is None


# ---- errors ----

@pytest.mark.parametrize("kw, param", [
    (dict(temperature=-1), "temperature"),
    (dict(temperature=2.5), "temperature"),
    (dict(top_p=0), "top_p"),
    (dict(n=0), "n"),
    (dict(max_tokens=-5), "max_tokens"),
    (dict(max_tokens=100000), "max_tokens"),
    (dict(presence_penalty=3), "presence_penalty"),
    (dict(logprobs=21), "logprobs"),
    (dict(extra_body={"top_k": -7}), "top_k"),
    (dict(extra_body={"repetition_penalty": 0}), "repetition_penalty"),
    (dict(stop=[""]), "stop"),
])
def test_bad_values_are_400(client, kw, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt="hi", **kw)
    assert e.value.status_code == 400
    err = e.value.body
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"]


def test_chat_errors(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL_NAME, messages=[{"role": "wizard", "content": "hi"}])
    assert e.value.body["param"] == "messages[0].role"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL_NAME, messages=[])
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL_NAME, messages=PARIS, top_logprobs=2)  # without logprobs
    assert e.value.body["param"] == "top_logprobs"
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=PARIS)
    assert e.value.body["code"] == "model_not_found"


def test_context_window_errors(client, server):
    ctx = client.models.list().data[0].model_extra["max_model_len"]
    long_prompt = " hello" * (ctx + 10)
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt=long_prompt, max_tokens=1)
    assert e.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=MODEL_NAME, prompt="hi", max_tokens=ctx)
    assert e.value.body["param"] == "max_tokens"
    assert server.alive()


def test_http_level_errors(server):
    status, headers, body = server.request("POST", "/v1/completions", body="{not json")
    assert status == 400 and json.loads(body)["error"]["code"] == "invalid_json"
    status, _, body = server.request("GET", "/v1/nothing-here")
    assert status == 404 and json.loads(body)["error"]["message"]
    status, headers, body = server.request("GET", "/v1/chat/completions")
    assert status == 405 and headers.get("Allow") == "POST" and "error" in json.loads(body)
    status, _, _ = server.request("DELETE", "/v1/models")
    assert status in (404, 405)


def test_api_key_required(server):
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic x"}):
        status, _, body = server.request("POST", "/v1/completions", body={"prompt": "hi"}, headers=headers)
        assert status == 401, headers
        assert json.loads(body)["error"]["code"] == "invalid_api_key"
    bad = openai.OpenAI(base_url=server.base_url + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    status, _, _ = server.request("GET", "/health", headers={"Authorization": ""})
    assert status == 200  # health stays open for load balancers


# ---- tokenize / detokenize ----

def test_tokenize_matches_hf_tokenizers(server, client):
    ctx = client.models.list().data[0].model_extra["max_model_len"]
    hf = hf_tokenizer()
    for text in ["Hello world", "The year 2024 had 366 days.", "naïve café — 東京 🚀", "<|im_start|>user\nhi<|im_end|>"]:
        status, r = server.post_json("/tokenize", {"model": MODEL_NAME, "prompt": text})
        assert status == 200
        assert r["tokens"] == hf.encode(text).ids, text
        assert r["count"] == len(r["tokens"]) and r["max_model_len"] == ctx
        status, d = server.post_json("/detokenize", {"model": MODEL_NAME, "tokens": r["tokens"]})
        assert status == 200 and d["prompt"] == text
    status, r = server.post_json("/tokenize", {"messages": PARIS})
    assert status == 200 and r["tokens"] == chat_template_ids(PARIS)
    status, r = server.post_json("/tokenize", {"prompt": "Hello world", "return_token_strs": True})
    assert r["token_strs"] == ["Hello", " world"]


def test_tokenize_errors(server):
    assert server.post_json("/detokenize", {"tokens": [10**9]})[0] == 400
    assert server.post_json("/detokenize", {"tokens": "abc"})[0] == 400
    assert server.post_json("/tokenize", {})[0] == 400
    assert server.post_json("/tokenize", {"prompt": 5})[0] == 400
    assert server.post_json("/tokenize", {"prompt": "x", "model": "other"})[0] == 404
