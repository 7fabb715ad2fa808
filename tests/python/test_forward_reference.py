"""Jarvis's CPU forward pass (tools/jarvis-logits) against an independent NumPy implementation
(numpy_reference.py: HF architecture definitions, weights via the PyPI `gguf` package, float64).

Tolerance. Both sides use the same dequantized weights, so the only legitimate difference is
float32 rounding in Jarvis. Measured on SmolLM2-135M (64 tokens, logits up to ~33): running the
NumPy reference itself in float32 moves its logits by up to 6.0e-5 from float64; Jarvis is 2.5e-5
away. We allow 1e-5 x max|logit| (3.3e-4 there): ~5x the float32-rounding spread, while real
bugs (a wrong RoPE pairing, a wrong GQA head map, a missing bias or norm offset, an off-by-one
in the cache) move logits by 1e-1 or more. Argmax must agree at every position, except where the
reference's top-2 margin is itself below the tolerance (a numerical tie): there either of the
two is accepted, and such positions are counted and bounded.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from numpy_reference import Reference  # noqa: E402

SRC = Path(os.environ.get("JARVIS_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BIN = Path(os.environ.get("JARVIS_BIN_DIR", SRC / "build" / "bin"))
LOGITS = BIN / "jarvis-logits"
SMOLLM = SRC / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
REL_TOL = 1e-5


def run_logits(model, tokens, tmp_path, name="out", **opts):
    """Runs jarvis-logits; returns logits [seqs, n, vocab] (or hidden when out_hidden given)."""
    out = tmp_path / f"{name}.f32"
    cmd = [str(LOGITS), "--model", str(model), "--tokens", ",".join(map(str, tokens))]
    if not opts.pop("no_logits", False):
        cmd += ["--out", str(out)]
    for k, v in opts.items():
        cmd += ["--" + k.replace("_", "-"), str(v)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return out, res


def load_f32(path, seqs, n):
    a = np.fromfile(path, dtype=np.float32)
    return a.reshape(seqs, n, -1)


def check_against_reference(ours, ref, what):
    """ours [n, vocab] float32, ref [n, vocab] float64."""
    assert ours.shape == ref.shape, what
    assert np.all(np.isfinite(ours)), what
    tol = REL_TOL * np.abs(ref).max()
    diff = np.abs(ours - ref).max()
    assert diff <= tol, f"{what}: max |diff| {diff:.3g} > tol {tol:.3g}"
    top2 = np.sort(ref, axis=1)[:, -2:]
    ties = (top2[:, 1] - top2[:, 0]) < 2 * tol
    ref_arg, our_arg = ref.argmax(1), ours.argmax(1)
    second = np.argsort(ref, axis=1)[:, -2]
    ok = (our_arg == ref_arg) | (ties & (our_arg == second))
    assert ok.all(), f"{what}: argmax differs at positions {np.nonzero(~ok)[0].tolist()}"
    assert ties.sum() <= max(1, len(ref) // 20), f"{what}: {ties.sum()} near-ties; the prompt is degenerate"
    return diff, tol, int(ties.sum())


def smollm_prompt(n=64):
    """64 real-text token ids, encoded with HF `tokenizers` from the GGUF vocabulary (not ours)."""
    import gguf
    from tokenizers import Tokenizer, models, pre_tokenizers

    r = gguf.GGUFReader(str(SMOLLM))
    vocab = {t: i for i, t in enumerate(r.fields["tokenizer.ggml.tokens"].contents())}
    merges = [tuple(m.split(" ", 1)) for m in r.fields["tokenizer.ggml.merges"].contents()]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    text = ("user\nThe quick brown fox jumps over the lazy dog. In 1969, Apollo 11 landed on the "
            "Moon; Neil Armstrong and Buzz Aldrin walked on its surface while Michael Collins "
            "orbited above. Explain why the sky is blue, briefly, in two sentences please, and then say what color sunsets are and why.")
    ids = [vocab["<|im_start|>"]] + tok.encode(text).ids
    assert len(ids) >= n
    return ids[:n]


@pytest.fixture(scope="module")
def smollm():
    if not SMOLLM.exists():
        pytest.skip(f"default model missing: {SMOLLM} (run scripts/setup.sh)")
    tokens = smollm_prompt()
    ref = Reference(str(SMOLLM)).forward(tokens)
    return tokens, ref


@pytest.mark.parametrize("opts", [
    dict(threads=1),
    dict(threads=2),
    dict(threads=2, chunk=13, decode=10),             # chunked prefill, then decode steps
    dict(threads=1, chunk=5, decode=3, page_size=1),  # page per token
    dict(threads=2, seqs=3, chunk=40, page_size=7),   # three sequences batched, odd pages
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_smollm2_matches_reference(smollm, tmp_path, opts):
    tokens, ref = smollm
    seqs = opts.get("seqs", 1)
    out, _ = run_logits(SMOLLM, tokens, tmp_path, **opts)
    ours = load_f32(out, seqs, len(tokens))
    for s in range(seqs):
        diff, tol, ties = check_against_reference(ours[s], ref, f"SmolLM2 {opts} seq {s}")
        print(f"SmolLM2 {opts} seq {s}: max|diff| {diff:.3g} (tol {tol:.3g}), near-ties {ties}")
