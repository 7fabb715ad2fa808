"""The default path (weights kept in their GGUF blocks, 8-bit activations) against the
`--weights f32` reference path over a few thousand tokens of real text: Shakespeare's Sonnets
(public domain, tests/data/README.md), tokenized with HF `tokenizers` from the GGUF vocabulary.

Both paths run tools/jarvis-logits teacher-forced over the same windows: each window is
<|endoftext|> (the document separator SmolLM2 was trained with) and the next 511 tokens of the
text, as llama.cpp's perplexity tool evaluates in fixed contexts; windows do not overlap. At every
position we take the log-probability of the true next token and the argmax.

Issue 10 asks for >= 99% agreement at every position and perplexity within 0.5%; 8-bit activations
(llama.cpp's scheme too) do not reach that on this model (figures below), so those targets are NOT
met and are not what is asserted. What is asserted guards what holds: wherever the f32 path is
confident (top-2 margin >= 0.3) the default path predicts the same token at >= 99% of positions,
overall agreement stays >= 94% and perplexity within 1%.

Windows of 512 keep the run inside the CI budget (~60 s for both paths on 2 cores): a window's
cost is its tokens through 30 layers, while one 4096-token prefill costs over twice as much per
token (attention grows with the context) and writes a 0.8 GB logits file.
"""
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_check import SMOLLM, SRC, run_logits  # noqa: E402

TEXT = SRC / "tests" / "data" / "shakespeare_sonnets.txt"
WINDOW = 512
WINDOWS = 6  # 3066 predicted tokens
# The bounds. Measured with the integer kernels (kern, 2026-12-04): 94.9% and +0.65%. The
# NumPy reference with the same activation quantization (numpy_reference.py) predicts the same on
# the first 4 windows, 94.7-95.3% and +0.52-0.75% against the float reference: the gap is the
# 8-bit activation rounding itself, not the kernels. Nearly all flips are at positions whose f32
# top-2 margin is below ~0.3 (the printout counts them), where the ~0.27-RMS logit movement of the
# rounding decides; poetry at perplexity ~60 has many such positions.
AGREE_MIN = 0.94          # measured 94.9-95.1%
CONFIDENT_MARGIN = 0.3
CONFIDENT_AGREE_MIN = 0.99  # measured 99.65% at f32 margins >= 0.3
PPL_REL = 0.01            # measured +0.65-0.72%
# SmolLM2-135M-Instruct on these windows with the f32 path: perplexity 63.8, top-1 accuracy 28.7%
# (measured). Both paths could agree and still be wrong in a shared way (a bad tokenizer rebuild,
# targets shifted, wrong windows): on the first window, scoring the current token instead of the
# next gives perplexity 60067, the token after next 16735 (true next: 55.7). 100 separates those.
PPL_SANE = 100.0


def text_windows():
    """WINDOWS lists of WINDOW token ids: <|endoftext|> then consecutive tokens of the text."""
    from serve_fixture import hf_tokenizer

    tok = hf_tokenizer()
    ids = tok.encode(TEXT.read_text(encoding="utf-8"), add_special_tokens=False).ids
    start = tok.token_to_id("<|endoftext|>")
    per = WINDOW - 1
    assert len(ids) >= per * WINDOWS, f"{TEXT} has only {len(ids)} tokens"
    return [[start] + ids[k * per:(k + 1) * per] for k in range(WINDOWS)]


def next_token_stats(tokens, tmp_path, **opts):
    """For one window, at each position that has a next token [n-1]: the log-probability of that
    token, the argmax, and the top-2 logit margin."""
    out, _ = run_logits(SMOLLM, tokens, tmp_path, name="window", threads=2, **opts)
    logits = np.fromfile(out, dtype=np.float32).reshape(len(tokens), -1)[:-1].astype(np.float64)
    out.unlink()
    z = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    targets = np.asarray(tokens[1:])
    top2 = np.partition(logits, -2, axis=1)[:, -2:]
    return z[np.arange(len(targets)), targets] - log_norm, logits.argmax(axis=1), top2[:, 1] - top2[:, 0]


def run_text(windows, tmp_path, **opts):
    """(log-probabilities, argmaxes, margins) over all windows, and the seconds it took."""
    t0 = time.monotonic()
    stats = [next_token_stats(w, tmp_path, **opts) for w in windows]
    return [np.concatenate(col) for col in zip(*stats)], time.monotonic() - t0


def test_quantized_path_matches_f32_path_over_text(tmp_path):
    if not SMOLLM.exists():
        pytest.skip(f"default model missing: {SMOLLM} (run scripts/setup.sh)")
    windows = text_windows()
    (ref_logp, ref_arg, ref_margin), ref_s = run_text(windows, tmp_path, weights="f32")
    (logp, arg, _), s = run_text(windows, tmp_path, weights="native")
    same = arg == ref_arg
    agree = float(np.mean(same))
    ppl_ref, ppl = float(np.exp(-ref_logp.mean())), float(np.exp(-logp.mean()))
    edges = [0, 0.1, 0.3, 1, np.inf]
    by_margin = ", ".join(f"[{lo:g}, {hi:g}): {int(np.sum(~same & (ref_margin >= lo) & (ref_margin < hi)))}"
                          f"/{int(np.sum((ref_margin >= lo) & (ref_margin < hi)))}" for lo, hi in zip(edges, edges[1:]))
    print(f"text: {len(arg)} positions in {WINDOWS} windows of {WINDOW}; greedy agreement {agree:.2%}; "
          f"perplexity f32 {ppl_ref:.4f}, default {ppl:.4f} ({ppl / ppl_ref - 1:+.3%}); "
          f"run time f32 {ref_s:.1f} s, default {s:.1f} s; disagreements by f32 top-2 margin {by_margin}")
    assert np.all(np.isfinite(ref_logp)) and np.all(np.isfinite(logp))
    assert ppl_ref < PPL_SANE, f"f32 path perplexity {ppl_ref:.2f}: the run itself is wrong"
    confident = ref_margin >= CONFIDENT_MARGIN
    agree_confident = float(np.mean(same[confident]))
    print(f"agreement where the f32 margin >= {CONFIDENT_MARGIN}: {agree_confident:.2%} of {int(confident.sum())}")
    assert agree_confident >= CONFIDENT_AGREE_MIN, f"confident agreement {agree_confident:.2%}"
    assert agree >= AGREE_MIN, f"greedy agreement {agree:.2%} < {AGREE_MIN:.0%}"
    assert abs(ppl / ppl_ref - 1) <= PPL_REL, f"perplexity {ppl:.4f} vs f32 {ppl_ref:.4f}"
