"""jarvis-cli end to end on the default model (SmolLM2-135M-Instruct, Q4_1): greedy answers to plain
questions, the statistics lines, argument and model-path errors."""
import os
import re
import subprocess
from pathlib import Path

import pytest

BIN = Path(os.environ.get("JARVIS_BIN_DIR", "build/bin")) / "jarvis-cli"
SRC = Path(os.environ.get("JARVIS_SOURCE_DIR", "."))
MODEL = SRC / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

pytestmark = [
    pytest.mark.skipif(not BIN.exists(), reason=f"{BIN} not built"),
    pytest.mark.skipif(not MODEL.exists(), reason=f"{MODEL} missing (scripts/setup.sh downloads it)"),
]

STATS = {
    "prompt": re.compile(r"^prompt: (\d+) tokens, ([0-9.]+) tokens/s$", re.M),
    "generated": re.compile(r"^generated: (\d+) tokens, ([0-9.]+) tokens/s$", re.M),
    "ttft": re.compile(r"^time to first token: ([0-9.]+) s$", re.M),
    "rss": re.compile(r"^peak RSS: ([0-9.]+) MiB$", re.M),
    "finish": re.compile(r"^finish: (stop|length)$", re.M),
}


def cli(*args, check=True):
    r = subprocess.run([str(BIN), "-m", str(MODEL), "-t", "2", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def stats(stderr):
    out = {}
    for name, rx in STATS.items():
        m = rx.search(stderr)
        assert m, f"no '{name}' line in:\n{stderr}"
        out[name] = m.groups()
    return out


@pytest.mark.parametrize("question, answer", [
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Germany?", "Berlin"),
])
def test_chat_greedy_answers(question, answer):
    # The float32 reference path: with the default 8-bit activations this 135M model answers the
    # France question as llama.cpp does on the same file ("L'Etoile, la Marseillaise, ..."), not
    # with Paris; issue 10's closing note has the accuracy figures of the default path.
    r = cli("--chat", question, "--temperature", "0", "-n", "40", "--weights", "f32")
    assert answer in r.stdout, r.stdout
    s = stats(r.stderr)
    assert int(s["prompt"][0]) > 5 and float(s["prompt"][1]) > 0
    assert 1 <= int(s["generated"][0]) <= 40
    assert float(s["ttft"][0]) > 0
    assert float(s["rss"][0]) > 100  # the float32 weights alone are ~500 MiB
    assert "<|im_end|>" not in r.stdout  # the end-of-turn token ends generation, it is not text


def test_raw_prompt_length_limit_and_determinism():
    args = ("-p", "The capital of France is", "--temperature", "0", "-n", "6", "--ignore-eos")
    first = cli(*args)
    s = stats(first.stderr)
    assert int(s["generated"][0]) == 6
    assert s["finish"][0] == "length"
    assert "Paris" in first.stdout, first.stdout
    assert cli(*args).stdout == first.stdout  # greedy is deterministic


def test_seeded_sampling_reproduces():
    args = ("-p", "Once upon a time", "--temperature", "0.9", "--top-p", "0.9", "--seed", "42", "-n", "12",
            "--ignore-eos")
    assert cli(*args).stdout == cli(*args).stdout


def test_stop_string_cuts_output():
    r = cli("-p", "The capital of France is", "--temperature", "0", "-n", "20", "--stop", "Paris")
    assert "Paris" not in r.stdout
    assert stats(r.stderr)["finish"][0] == "stop"


def test_bad_model_path():
    r = subprocess.run([str(BIN), "-m", "/nonexistent/model.gguf", "-p", "hi"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1
    assert "error" in r.stderr and "/nonexistent/model.gguf" in r.stderr, r.stderr


def test_bad_arguments():
    r = cli("-p", "hi", "--top-p", "1.5", check=False)
    assert r.returncode == 1 and "top_p" in r.stderr, r.stderr
    r = cli(check=False)  # neither -p nor --chat
    assert r.returncode == 1 and "--prompt" in r.stderr, r.stderr
    r = cli("-p", "hi", "--no-such-flag", check=False)
    assert r.returncode == 1
