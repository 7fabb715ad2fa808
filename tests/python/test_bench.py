"""jarvis-bench against (1) a scripted fake OpenAI server that knows when it sent each chunk, and
(2) the real jarvis-serve. Summary statistics are recomputed with NumPy from the per-request JSON."""
import json
import os
import subprocess

import numpy as np
import pytest

from fake_openai_server import FakeOpenAI
from serve_fixture import MODEL, SRC, Server, requires_server

BENCH = os.path.join(os.environ.get("JARVIS_BIN_DIR", "build/bin"), "jarvis-bench")
pytestmark = pytest.mark.skipif(not os.access(BENCH, os.X_OK), reason=f"{BENCH} not built")


def run_bench(tmp_path, base_url, *args, expect_rc=0):
    out = tmp_path / "bench.json"
    r = subprocess.run([BENCH, "--base-url", base_url, "--json", str(out), *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == expect_rc, r.stdout + r.stderr
    assert "Output token throughput" in r.stdout
    assert "\r" not in r.stderr, "no progress line when stderr is not a TTY"
    return json.loads(out.read_text())


def check_consistent(res, n, output_len=None, chunk_per_token=True):
    """Invariants of any run, and the summary recomputed independently from per_request.
    chunk_per_token: the server streams every token in its own chunk (the fake does; a real server
    may hold back a token that decodes to no text yet)."""
    assert res["requests"] == n
    assert res["completed"] + res["failed"] == n
    ok = [r for r in res["per_request"] if r["ok"]]
    assert len(ok) == res["completed"]
    if output_len is not None:
        assert all(r["output_tokens"] == output_len for r in ok)
        assert res["total_output_tokens"] == output_len * len(ok)
    for r in ok:
        assert 0 < r["ttft_ms"] <= r["e2e_ms"]
        if chunk_per_token:
            assert len(r["itl_ms"]) == r["output_tokens"] - 1
        else:
            assert len(r["itl_ms"]) <= r["output_tokens"] - 1
        assert r["ttft_ms"] + sum(r["itl_ms"]) <= r["e2e_ms"] * (1 + 1e-9)
    ttft = [r["ttft_ms"] for r in ok]
    e2e = [r["e2e_ms"] for r in ok]
    itl = [x for r in ok for x in r["itl_ms"]]
    tpot = [(r["e2e_ms"] - r["ttft_ms"]) / (r["output_tokens"] - 1) for r in ok if r["output_tokens"] > 1]
    for key, values in (("ttft_ms", ttft), ("e2e_ms", e2e), ("itl_ms", itl), ("tpot_ms", tpot)):
        d = res[key]
        assert d["count"] == len(values), key
        if not values:
            continue
        assert d["min"] <= d["p50"] <= d["p90"] <= d["p99"] <= d["max"], key
        assert d["min"] <= d["mean"] <= d["max"], key
        # Same doubles summed in a different order: agreement to 1e-9 relative.
        for name, want in (("mean", np.mean(values)), ("p50", np.percentile(values, 50)),
                           ("p90", np.percentile(values, 90)), ("p99", np.percentile(values, 99))):
            assert d[name] == pytest.approx(want, rel=1e-9), (key, name)
    last_end_s = max(r["start_ms"] + r["e2e_ms"] for r in res["per_request"]) / 1e3
    assert res["duration_s"] == pytest.approx(last_end_s, rel=1e-6)
    assert res["request_throughput"] == pytest.approx(res["completed"] / res["duration_s"], rel=1e-9)
    assert res["output_throughput"] == pytest.approx(res["total_output_tokens"] / res["duration_s"], rel=1e-9)
    total = res["total_input_tokens"] + res["total_output_tokens"]
    assert res["total_token_throughput"] == pytest.approx(total / res["duration_s"], rel=1e-9)


def test_concurrency_and_timings_match_the_server_script(tmp_path):
    with FakeOpenAI(first_token_delay=0.05, token_delay=0.02) as fake:
        res = run_bench(tmp_path, fake.base_url, "-n", "8", "--concurrency", "4",
                        "--input-len", "20", "--output-len", "10")
    check_consistent(res, 8, output_len=10)
    assert res["completed"] == 8 and res["failed"] == 0
    assert res["config"]["model"] == "fake-model"  # taken from GET /v1/models
    assert fake.max_in_flight == 4
    for body in fake.bodies:
        assert body["stream"] is True and body["ignore_eos"] is True and body["max_tokens"] == 10
        assert body["stream_options"] == {"include_usage": True}
        assert len(body["prompt"].split()) == 20
    assert len({b["prompt"] for b in fake.bodies}) == 8, "synthetic prompts differ"
    # The server sleeps 50 ms before the first token and 20 ms between tokens; the client cannot
    # see a gap shorter than the sleep (minus timer slack), and loopback adds well under 30 ms.
    assert res["ttft_ms"]["min"] >= 49
    assert 19 <= res["itl_ms"]["p50"] <= 50
    assert 19 <= res["tpot_ms"]["mean"] <= 50


def test_chat_endpoint_skips_the_role_chunk(tmp_path):
    with FakeOpenAI(first_token_delay=0.05, token_delay=0.005) as fake:
        res = run_bench(tmp_path, fake.base_url, "--endpoint", "chat", "-n", "4",
                        "--concurrency", "2", "--input-len", "8", "--output-len", "5")
    check_consistent(res, 4, output_len=5)
    # The role-only chunk arrives at once; had it counted as a token, TTFT would be ~0.
    assert res["ttft_ms"]["min"] >= 49
    assert all(b["messages"][0]["role"] == "user" for b in fake.bodies)


def test_without_usage_tokens_are_counted_from_chunks(tmp_path):
    with FakeOpenAI(first_token_delay=0.0, token_delay=0.001) as fake:
        res = run_bench(tmp_path, fake.base_url, "-n", "3", "--output-len", "7", "--input-len", "11",
                        "--no-usage", "--no-ignore-eos")
    check_consistent(res, 3, output_len=7)
    assert all("stream_options" not in b and "ignore_eos" not in b for b in fake.bodies)
    assert res["total_input_tokens"] == 3 * 11  # the synthetic length stands in for usage


def test_poisson_arrivals_and_length_ranges(tmp_path):
    args = ["-n", "20", "--request-rate", "20", "--seed", "7", "--input-len-range", "5:15",
            "--output-len-range", "2:6"]
    with FakeOpenAI(first_token_delay=0.0, token_delay=0.001) as fake:
        res = run_bench(tmp_path, fake.base_url, *args)
        bodies_first = list(fake.bodies)
    check_consistent(res, 20)
    starts = sorted(r["start_ms"] for r in res["per_request"])
    # 19 exponential gaps at 20/s: mean span 950 ms; [300, 3000] ms holds with probability
    # above 1 - 1e-6 (Gamma(19, 1/20) tails), so a failure means the schedule is wrong.
    assert 300 <= starts[-1] - starts[0] <= 3000
    lengths = [len(b["prompt"].split()) for b in bodies_first]
    assert all(5 <= x <= 15 for x in lengths) and len(set(lengths)) > 3
    outs = [b["max_tokens"] for b in bodies_first]
    assert all(2 <= x <= 6 for x in outs) and len(set(outs)) > 1
    assert res["total_output_tokens"] == sum(outs)
    # The seed fixes the workload: a second run sends the same prompts.
    with FakeOpenAI(first_token_delay=0.0, token_delay=0.001) as fake:
        run_bench(tmp_path, fake.base_url, *args)
        assert sorted(b["prompt"] for b in fake.bodies) == sorted(b["prompt"] for b in bodies_first)


def test_dataset_file(tmp_path):
    data = tmp_path / "prompts.jsonl"
    entries = [{"prompt": "Hello there", "max_tokens": 3}, {"prompt": "Tell me a story"},
               {"prompt": "Why is the sky blue?", "max_tokens": 5}]
    data.write_text("\n".join(json.dumps(e) for e in entries) + "\n\n")
    with FakeOpenAI(first_token_delay=0.0, token_delay=0.001) as fake:
        res = run_bench(tmp_path, fake.base_url, "--dataset", str(data), "-n", "5", "--output-len", "4")
    check_consistent(res, 5)
    # Concurrency 1: requests arrive in dataset order, cycled.
    assert [b["prompt"] for b in fake.bodies] == [entries[i % 3]["prompt"] for i in range(5)]
    assert [b["max_tokens"] for b in fake.bodies] == [3, 4, 5, 3, 4]


def test_bad_dataset_is_a_clear_error(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "ok"}\n{"max_tokens": 3}\n')
    r = subprocess.run([BENCH, "--base-url", "http://127.0.0.1:1/v1", "--model", "m", "--dataset", str(data)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "bad.jsonl:2" in r.stderr and "prompt" in r.stderr


def test_failed_requests_are_counted_not_timed(tmp_path):
    with FakeOpenAI(first_token_delay=0.0, token_delay=0.001, fail_every=3) as fake:
        res = run_bench(tmp_path, fake.base_url, "-n", "9", "--output-len", "4", expect_rc=1)
    check_consistent(res, 9, output_len=4)
    assert res["failed"] == 3 and res["completed"] == 6
    assert any("503" in e for e in res["errors"])
    assert res["ttft_ms"]["count"] == 6


@pytest.mark.parametrize("close_after", [0.0, 0.2])
def test_server_that_closes_the_connection_after_each_stream(tmp_path, close_after):
    # llama.cpp's server (llama-cpp-python 0.3.36) closes the connection after every streamed
    # response while announcing keep-alive; a request written into it meanwhile is reset unread
    # ("HTTP Read"). At 0.2 s every reuse loses that race; at 0 s some do (llama-server's case).
    n = 8
    with FakeOpenAI(first_token_delay=0.02, token_delay=0.001, close_after_stream=close_after) as fake:
        res = run_bench(tmp_path, fake.base_url, "-n", str(n), "--output-len", "4", "--input-len", "5")
    check_consistent(res, n, output_len=4)
    assert res["failed"] == 0, res["errors"]
    # The server never read a lost request: each was served exactly once, on a connection of its
    # own (plus GET /models).
    assert len(fake.bodies) == n
    assert fake.connections == n + 1
    resent = [r["resent"] for r in res["per_request"]]
    assert res["resent"] == sum(resent)
    assert resent[0] is False  # a fresh connection is not resent
    if close_after > 0:
        assert all(resent[1:])
        # The lost attempt (it waited for the close) is not charged to the request.
        assert res["ttft_ms"]["max"] < 150


@pytest.mark.parametrize("eol", ["\r\n", "\r"])
def test_any_event_stream_line_end(tmp_path, eol):
    with FakeOpenAI(first_token_delay=0.0, token_delay=0.001, sse_line_end=eol) as fake:
        res = run_bench(tmp_path, fake.base_url, "-n", "2", "--output-len", "5", "--input-len", "3")
    check_consistent(res, 2, output_len=5)
    assert res["failed"] == 0, res["errors"]


def test_unreachable_server_fails_cleanly(tmp_path):
    r = subprocess.run([BENCH, "--base-url", "http://127.0.0.1:1/v1", "-n", "2"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "models" in r.stderr


@requires_server[0]
@requires_server[1]
def test_against_jarvis_serve(tmp_path):
    n, input_len, output_len = 6, 16, 8
    with Server() as serve:
        res = run_bench(tmp_path, serve.base_url + "/v1", "-n", str(n), "--concurrency", "3",
                        "--input-len", str(input_len), "--output-len", str(output_len))
        chat = run_bench(tmp_path, serve.base_url + "/v1", "--endpoint", "chat", "-n", "2",
                         "--input-len", "8", "--output-len", "4")
    check_consistent(res, n, output_len=output_len, chunk_per_token=False)
    assert res["completed"] == n, res["errors"]
    assert all(r["usage_reported"] for r in res["per_request"])
    assert all(r["finish_reason"] == "length" for r in res["per_request"])
    # The synthetic words are single tokens of SmolLM2's vocabulary; the server may add a BOS token.
    for r in res["per_request"]:
        assert input_len <= r["prompt_tokens"] <= input_len + 2, r
    check_consistent(chat, 2, output_len=4, chunk_per_token=False)
    assert chat["completed"] == 2, chat["errors"]


def test_synthetic_words_are_single_tokens_of_the_default_model():
    # Checked with the independent `gguf` reader over the model's own vocabulary: "Ġword" (GPT-2
    # byte-level BPE's leading space) must be one token, so N words make about N prompt tokens.
    import re
    if not MODEL.exists():
        pytest.skip(f"{MODEL} missing")
    import gguf
    src = open(os.path.join(SRC, "benchmarks", "serving", "workload.cpp"), encoding="utf-8").read()
    start = src.index("kWords[] = {")
    words = re.findall(r'"([a-z]+)"', src[start:src.index("};", start)])
    assert len(words) >= 100
    field = gguf.GGUFReader(str(MODEL)).fields["tokenizer.ggml.tokens"]
    vocab = {bytes(field.parts[i]).decode("utf-8") for i in field.data}
    assert [w for w in words if "\u0120" + w not in vocab] == []
