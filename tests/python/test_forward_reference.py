"""SmolLM2-135M (the default model) through Jarvis's CPU forward pass (tools/jarvis-logits)
against an independent NumPy implementation (numpy_reference.py: HF architecture definitions,
weights via the PyPI `gguf` package, float64).

`--weights f32` (weights dequantized at load: the reference path) against the float reference:
whole and chunked prefill, decode steps, batched sequences, 1 and 2 threads, a two-shard split, and
the memory a shard holds. Tolerance: see forward_check.py.

The default path (weights kept in their GGUF blocks, each matmul's input quantized to 8 bits)
against the reference that applies the same activation quantization (quantize_activations=True):
layer by layer and the head on their own, tightly, and the whole model as an approximation of the
float reference. Why not the whole model tightly: rounding to 8 bits is discontinuous, so where two
float32 evaluation orders put x * id on either side of a half-integer, one value moves by a whole
step; that perturbs the next layer's inputs by ~1e-4, which moves ~1% of its roundings, and so on.
Measured on the 64-token prompt: the quantized reference run in float32 instead of float64 ends
1.58 away in the logits (max), as far as quantization itself moves them (1.57). Within one layer,
given the same input, that cascade cannot start, so there the check is tight.
"""
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from activation_quant import rounding_margin  # noqa: E402
from forward_check import (REL_TOL, SMOLLM, check_against_reference, load_f32, run_logits,  # noqa: E402
                           run_split)
from numpy_reference import Reference  # noqa: E402

F32 = dict(weights="f32")  # the dequantize-at-load path, which the float reference checks exactly


def smollm_prompt(r, n=64):
    """64 real-text token ids, encoded with HF `tokenizers` from the GGUF vocabulary (not ours)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

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
    reader = gguf.GGUFReader(str(SMOLLM))
    tokens = smollm_prompt(reader)
    ref = Reference(str(SMOLLM), reader=reader).forward(tokens)
    return tokens, ref, reader


@pytest.mark.parametrize("opts", [
    dict(threads=1),
    dict(threads=2, chunk=13, decode=10, page_size=1),  # chunked prefill, decode steps, page per token
    dict(threads=2, seqs=3, chunk=40, page_size=7),     # three sequences batched, odd page size
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_smollm2_matches_reference(smollm, tmp_path, opts):
    tokens, ref, _ = smollm
    seqs = opts.get("seqs", 1)
    out, _ = run_logits(SMOLLM, tokens, tmp_path, **F32, **opts)
    ours = load_f32(out, seqs, len(tokens))
    for s in range(seqs):
        diff, tol, ties = check_against_reference(ours[s], ref, f"SmolLM2 {opts} seq {s}")
        print(f"SmolLM2 {opts} seq {s}: max|diff| {diff:.3g} (tol {tol:.3g}), near-ties {ties}")


# Native weights (the default), against the same float64 reference. With the interim
# dequantize-and-dot kernel this path equals --weights f32 (max|diff| 1.7e-4 here). The integer
# kernels quantize each activation block of 32 to 8 bits (Q8_0 / Q8_1, as llama.cpp does), and on
# SmolLM2, whose hidden states carry a few channels of ~1e2-1e3, that moves logits measurably:
# measured with kern's kernels (every ISA alike) max|diff| 1.63 (4.4% of max|logit| 36.6), mean
# 0.19 (0.5%), argmax agreeing at 60 of 64 positions. This test is a structural check of the model
# over the native products (a wrong matrix, a lost residual or activation moves logits by several
# units everywhere and breaks most argmaxes); the quantization-aware NumPy reference (acc's)
# checks the kernels tightly. Bounds: about twice the measured figures.
NATIVE_MAX_REL = 0.1    # max|diff| / max|logit|
NATIVE_MEAN_REL = 0.01  # mean|diff| / max|logit|
NATIVE_ARGMAX = 0.85    # fraction of positions whose argmax agrees


@pytest.mark.parametrize("opts", [dict(threads=2), dict(threads=2, chunk=13, decode=10, seqs=2)],
                         ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_smollm2_native_weights_near_reference(smollm, tmp_path, opts):
    tokens, ref, _ = smollm
    out, _ = run_logits(SMOLLM, tokens, tmp_path, weights="native", **opts)
    ours = load_f32(out, opts.get("seqs", 1), len(tokens))
    scale = np.abs(ref).max()
    for s in range(ours.shape[0]):
        assert np.all(np.isfinite(ours[s]))
        diff = np.abs(ours[s] - ref)
        agree = (ours[s].argmax(1) == ref.argmax(1)).mean()
        print(f"SmolLM2 native {opts} seq {s}: max|diff| {diff.max():.3g}, mean {diff.mean():.3g}, "
              f"argmax agreement {agree:.3f}")
        assert diff.max() <= NATIVE_MAX_REL * scale
        assert diff.mean() <= NATIVE_MEAN_REL * scale
        assert agree >= NATIVE_ARGMAX


def test_smollm2_two_shards_match_reference(smollm, tmp_path):
    tokens, ref, _ = smollm
    split = run_split(SMOLLM, tokens, [0, 12, 30], tmp_path, threads=2, chunk=20, decode=4, **F32)
    diff, tol, _ = check_against_reference(split[0], ref, "SmolLM2 split [0,12)+[12,30)")
    print(f"SmolLM2 shards: max|diff| {diff:.3g} (tol {tol:.3g})")


def parse_report(stderr):
    line = [l for l in stderr.splitlines() if l.startswith("weights_bytes=")][-1]
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split())}


def expected_weight_bytes(r, layers, embedding, head, weights):
    """Bytes of the tensors a shard should hold, counted from the GGUF via `gguf`: natively a
    matrix as the file stores it and a vector as float32; under --weights f32 4 bytes each."""
    if weights == "f32":
        names = {t.name: 4 * int(np.prod(t.shape)) for t in r.tensors}
    else:
        names = {t.name: int(t.n_bytes) if len(t.shape) >= 2 else 4 * int(t.n_elements) for t in r.tensors}
    total = sum(n for name, n in names.items() if any(name.startswith(f"blk.{l}.") for l in layers))
    tied = "output.weight" not in names
    if embedding or (head and tied):
        total += names["token_embd.weight"]
    if head:
        total += names["output_norm.weight"] + names.get("output.weight", 0)
    return total


@pytest.mark.parametrize("weights", ["native", "f32"])
def test_smollm2_shard_memory_is_its_share(smollm, tmp_path, weights):
    tokens, _, reader = smollm
    tokens = tokens[:4]
    _, full = run_logits(SMOLLM, tokens, tmp_path, name="full", report="", weights=weights)
    zeros = tmp_path / "h0.f32"
    np.zeros((len(tokens), 576), dtype=np.float32).tofile(zeros)
    _, mid = run_logits(SMOLLM, tokens, tmp_path, name="mid", first_layer=5, end_layer=6, in_hidden=zeros,
                        out_hidden=tmp_path / "h1.f32", no_logits=True, report="", weights=weights)
    full, mid = parse_report(full.stderr), parse_report(mid.stderr)
    print(f"SmolLM2 memory ({weights}): full {full}, layer 5 alone {mid}")
    assert full["weights_bytes"] == expected_weight_bytes(reader, range(30), True, True, weights)
    assert mid["weights_bytes"] == expected_weight_bytes(reader, [5], False, False, weights)
    if weights == "native":
        assert full["weights_bytes"] <= SMOLLM.stat().st_size
    # Resident memory follows the weights held, not the file: the mapped pages of tensors read
    # are handed back. 48 MB covers the process, parsed metadata (49k-token vocabulary) and
    # the activations; a shard that dequantized everything would be ~540 MB.
    slack_kb = 48 * 1024
    for rep in (full, mid):
        assert rep["rss_kb"] < rep["weights_bytes"] // 1024 + slack_kb, rep
    if weights == "f32":
        assert mid["hwm_kb"] < full["hwm_kb"] / 10
    else:
        # Natively one layer is 2 MB, below the process's own baseline; what must hold is that
        # the shard's peak beyond its weights is no more than the whole model's.
        overhead = {k: r["hwm_kb"] - r["weights_bytes"] // 1024 for k, r in (("full", full), ("mid", mid))}
        assert overhead["mid"] <= overhead["full"], overhead


# ---- The default path: quantized activations -------------------------------------------------

# Per layer, for the teacher-forced run below, rho = ||engine update - quantized-reference update||
# / ||float-reference update - quantized-reference update|| (update = layer output - input, over all
# 64 tokens): 0 for an exact implementation of the quantized rule, 1 for one that does not quantize.
# Measured with a stand-in implementation (the quantized reference in float32 instead of float64,
# i.e. float rounding alone): median over the 30 layers 0.018, RMS 0.108, max 0.43 (layer 0, whose
# Q8_0 embedding puts 46 of 36864 inputs exactly on a rounding tie). Deliberately wrong variants of
# the reference score: no quantization before ffn_down median 0.45 / RMS 0.48 (before attn_output
# 0.53 / 0.53, attn_v 0.93 / 0.91, ffn_up 0.56 / 0.58), 64-element blocks 1.22 / 1.31,
# d = amax / 128 0.88 / 0.95. The bounds sit ~5x, ~3x and ~2.3x above the stand-in and below every
# wrong variant. (Round-half-away-from-zero instead of to-even differs only on exact ties, 0.000 /
# 0.128: below what a model-level test can see; the kernel tests check the rounding bytes.)
# The integer kernels measure median 0.021-0.030, RMS 0.090-0.092, max 0.435 (layer 0) on the
# scalar, AVX2 and AVX-512 paths, like the stand-in.
LAYER_RHO_MEDIAN = 0.1
LAYER_RHO_RMS = 0.3
LAYER_RHO_MAX = 1.0
# The head on its own: no layer follows it, so a rounding flip moves only its own position's logits,
# by at most d * max|W[:, i]| for input element i. Where the reference's x * id lies within
# TIE_MARGIN of a half-integer the other order may round the other way: 2e-4 covers an error of
# 1.5e-6 relative in the engine's float32 final norm (x * id reaches 127); the tolerance widens by
# exactly those elements' steps. Elsewhere REL_TOL (float32 rounding, forward_check.py) applies.
# Measured: the float32 stand-in is 3.4e-5 from the reference, the integer kernels 1.2e-5 (13 of 64
# positions widened), while quantization itself moves the head's logits by 0.41.
TIE_MARGIN = 2e-4
# The whole model as an approximation of the float reference. Mean KL(float || quantized) over the
# 64 positions: 0.0041 for the quantized reference, 0.0044 for its float32 stand-in, 0.0036 for the
# reference teacher-forced as in the fixture below, 0.0035-0.0041 for the integer kernels on each
# ISA (equally valid implementations differ ~15% in this statistic); a path that does not quantize
# gives ~1e-11. The engine must lie within a factor of 2 of the reference either way. Greedy tokens:
# quantized and float references differ only where the float reference's top-2 margin is under
# 0.13; the logits move by 0.27 RMS, so at margins over 1.0 (~4x that; 34 of the 64 positions) the
# argmax must agree.
KL_FACTOR = 2.0
CLEAR_MARGIN = 1.0


@pytest.fixture(scope="module")
def quantized_layers(smollm):
    """The quantized reference teacher-forced layer by layer: each layer's input as float32 (what
    the engine is handed) and the updates of the quantized and the float reference on that input."""
    tokens, _, reader = smollm
    q = Reference(str(SMOLLM), reader=reader, quantize_activations=True)
    f = Reference(str(SMOLLM), reader=reader)
    inputs, dq, df = [], [], []
    x = q.embed(tokens)
    for l in range(q.cfg["n_layers"]):
        x32 = x.astype(np.float32)
        xi = x32.astype(np.float64)
        x = q.layer(l, xi)
        inputs.append(x32)
        dq.append(x - xi)
        df.append(f.layer(l, xi) - xi)
    return q, inputs, dq, df, x.astype(np.float32)


def test_smollm2_quantized_layers_match_quantized_reference(smollm, quantized_layers, tmp_path):
    tokens = smollm[0]
    _, inputs, dq, df, _ = quantized_layers
    rho = []
    for l, x32 in enumerate(inputs):
        x_in, x_out = tmp_path / f"in{l}.f32", tmp_path / f"out{l}.f32"
        x32.tofile(x_in)
        run_logits(SMOLLM, tokens, tmp_path, first_layer=l, end_layer=l + 1, in_hidden=x_in, out_hidden=x_out,
                   no_logits=True, threads=2, chunk=40, weights="native")
        de = np.fromfile(x_out, dtype=np.float32).reshape(x32.shape).astype(np.float64) - x32
        assert np.all(np.isfinite(de)), f"layer {l}"
        rho.append(np.linalg.norm(de - dq[l]) / np.linalg.norm(df[l] - dq[l]))
    rho = np.array(rho)
    med, rms = np.median(rho), np.sqrt(np.mean(rho ** 2))
    print(f"SmolLM2 quantized layers: rho median {med:.3f} RMS {rms:.3f} max {rho.max():.3f} "
          f"(layer {rho.argmax()}); per layer {np.round(rho, 3).tolist()}")
    assert med <= LAYER_RHO_MEDIAN and rms <= LAYER_RHO_RMS, (med, rms, rho.round(3).tolist())
    assert rho.max() <= LAYER_RHO_MAX, f"layer {rho.argmax()}: rho {rho.max():.3f}"


def test_smollm2_quantized_head_matches_quantized_reference(quantized_layers, tmp_path):
    q, _, _, _, final = quantized_layers
    hidden = tmp_path / "final.f32"
    final.tofile(hidden)
    n_layers = q.cfg["n_layers"]
    out, _ = run_logits(SMOLLM, range(len(final)), tmp_path, first_layer=n_layers, end_layer=n_layers,
                        in_hidden=hidden, threads=2, weights="native")
    ours = load_f32(out, 1, len(final))[0]
    x = final.astype(np.float64)
    ref = q.logits(x)
    head = q.head_name()
    margin, d = rounding_margin(q.head_input(x), q.types[head])
    step = d * np.abs(q.t[head]).max(axis=0)  # the most one rounding flip at input i can move a logit
    widen = np.where(margin < TIE_MARGIN, step, 0.0).sum(axis=1)
    tol = REL_TOL * np.abs(ref).max() + widen
    diff = np.abs(ours - ref).max(axis=1)
    effect = np.abs(q.head_input(x) @ q.t[head].T - ref).max()  # what quantization itself moves
    print(f"SmolLM2 quantized head: max|diff| {diff.max():.3g}, base tol {tol.min():.3g}, "
          f"{int((widen > 0).sum())} positions widened for near-ties; quantization moves {effect:.3g}")
    bad = np.nonzero(diff > tol)[0]
    assert bad.size == 0, f"positions {bad.tolist()}: diff {diff[bad]} > tol {tol[bad]}"


def mean_kl(p_logits, q_logits):
    """Mean over positions of KL(softmax p || softmax q), in float64."""
    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    lp, lq = log_softmax(np.asarray(p_logits, np.float64)), log_softmax(np.asarray(q_logits, np.float64))
    return float((np.exp(lp) * (lp - lq)).sum(axis=1).mean())


def test_smollm2_default_path_approximates_float_reference(smollm, quantized_layers, tmp_path):
    tokens, ref, _ = smollm
    q, *_, final = quantized_layers
    out, _ = run_logits(SMOLLM, tokens, tmp_path, threads=2, chunk=24, weights="native")
    ours = load_f32(out, 1, len(tokens))[0]
    assert np.all(np.isfinite(ours))
    kl_ours, kl_q = mean_kl(ref, ours), mean_kl(ref, q.logits(final.astype(np.float64)))
    top2 = np.sort(ref, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > CLEAR_MARGIN
    agree = ours.argmax(1) == ref.argmax(1)
    print(f"SmolLM2 default path: mean KL to float reference {kl_ours:.3g} (quantized reference {kl_q:.3g}); "
          f"greedy agreement {agree.mean():.1%} overall, {agree[clear].mean():.1%} at {clear.sum()} clear positions; "
          f"max|diff| {np.abs(ours - ref).max():.3g}")
    assert kl_q / KL_FACTOR <= kl_ours <= kl_q * KL_FACTOR, (kl_ours, kl_q)
    assert agree[clear].all(), f"argmax differs at clear positions {np.nonzero(clear & ~agree)[0].tolist()}"
