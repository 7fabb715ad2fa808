"""Jarvis's CPU forward pass (tools/jarvis-logits) against an independent NumPy implementation
(numpy_reference.py: HF architecture definitions, weights via the PyPI `gguf` package, float64).

Tolerance. Both sides use the same dequantized weights, so the only legitimate difference is
float32 rounding in Jarvis. Measured on SmolLM2-135M with the 64-token test prompt (logits up to
36.6): the NumPy reference itself run in float32 moves its logits by up to 8.4e-5 from float64;
Jarvis is 4.4e-5 away. We allow 1e-5 x max|logit| (3.7e-4 there): ~4x the spread float32
rounding alone produces, while real bugs (a wrong RoPE pairing, a wrong GQA head map, a missing
bias or embedding scale, an off-by-one in the causal mask or the cache) move logits by 1e-1 or
more. Argmax must agree at every position, except where the reference's top-2 margin is itself
below twice the tolerance (a numerical tie, where float32 may legitimately flip the order):
there either of the two is accepted, and such positions are counted and bounded. (SmolLM2's
smallest top-2 margin on this prompt is 1.1e-2, so there it is strict everywhere.)
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from numpy_reference import Reference, read_gguf  # noqa: E402

SRC = Path(os.environ.get("JARVIS_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BIN = Path(os.environ.get("JARVIS_BIN_DIR", SRC / "build" / "bin"))
LOGITS = BIN / "jarvis-logits"
SMOLLM = SRC / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
REL_TOL = 1e-5


def run_logits(model, tokens, tmp_path, name="out", **opts):
    """Runs jarvis-logits; returns logits [seqs, n, vocab] (or hidden when out_hidden given)."""
    out = tmp_path / f"{name}.f32"
    cmd = [str(LOGITS), "--model", str(model), "--tokens", ",".join(map(str, tokens))]
    opts = dict(opts)
    if not opts.pop("no_logits", False):
        cmd += ["--out", str(out)]
    for k, v in opts.items():
        cmd += ["--" + k.replace("_", "-")] + ([] if v == "" else [str(v)])
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


# ---- (b) tiny random-weight models of each supported family, written here with GGUFWriter ----

from gguf import GGMLQuantizationType as Q  # noqa: E402
from tiny_gguf import write_tiny_model  # noqa: E402

MIXED = {"attn_q.weight": Q.Q8_0, "attn_k.weight": Q.Q4_0, "attn_v.weight": Q.F16,
         "ffn_gate.weight": Q.Q4_0, "ffn_up.weight": Q.Q8_0, "ffn_down.weight": Q.F16,
         "output.weight": Q.Q8_0, "token_embd.weight": Q.F16}
TINY = {
    # GQA 6:2, untied head, three layers, every storage type
    "llama_gqa": dict(arch="llama", n_layers=3, hidden=96, n_heads=6, n_kv_heads=2, ffn=160, qtypes=MIXED),
    # Llama 3.1 RoPE scaling from metadata (original context 64 so that all three frequency
    # bands -- kept, divided, interpolated -- occur with head_dim 16)
    "llama3_scaled": dict(arch="llama", n_layers=2, hidden=64, n_heads=4, n_kv_heads=2, ffn=128,
                          theta=500000.0, qtypes={"attn_output.weight": Q.Q4_0, "ffn_down.weight": Q.Q8_0},
                          rope_scaling=dict(type="llama3", factor=8.0, low_freq_factor=1.0,
                                            high_freq_factor=4.0, original_context_length=64)),
    # llama.cpp's own form of the same: per-pair divisors in rope_freqs.weight; plus linear scaling
    "llama_rope_freqs": dict(arch="llama", n_layers=2, hidden=64, n_heads=4, n_kv_heads=4, ffn=96,
                             rope_freqs=np.linspace(1.0, 8.0, 8), seed=3,
                             rope_scaling=dict(type="linear", factor=2.0)),
    # QKV bias, tied embeddings, GQA 4:1, NEOX RoPE
    "qwen2": dict(arch="qwen2", n_layers=2, hidden=64, n_heads=4, n_kv_heads=1, ffn=128, tied=True,
                  qkv_bias=True, theta=1000000.0, eps=1e-6, seed=1,
                  qtypes={"attn_q.weight": Q.Q8_0, "ffn_up.weight": Q.Q4_0, "token_embd.weight": Q.Q8_0}),
    # GeGLU, tied, sqrt(hidden) embedding scale, 1 + w norms, head_dim 32 != hidden / heads
    "gemma": dict(arch="gemma", n_layers=2, hidden=64, n_heads=4, n_kv_heads=1, head_dim=32, ffn=128,
                  tied=True, eps=1e-6, seed=2,
                  qtypes={"attn_v.weight": Q.Q8_0, "ffn_gate.weight": Q.Q4_0, "token_embd.weight": Q.F16}),
}
TINY_TOKENS = [int(t) for t in np.random.default_rng(7).integers(0, 300, size=40)]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    out = {}
    for name, spec in TINY.items():
        path = write_tiny_model(d / f"{name}.gguf", **spec)
        out[name] = (path, Reference(str(path)).forward(TINY_TOKENS))
    return out


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("opts", [
    dict(threads=1),
    dict(threads=2, chunk=7, decode=5, page_size=4),
    dict(threads=2, seqs=2, page_size=1, chunk=16),
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_tiny_models_match_reference(tiny_models, tmp_path, name, opts):
    path, ref = tiny_models[name]
    seqs = opts.get("seqs", 1)
    out, _ = run_logits(path, TINY_TOKENS, tmp_path, **opts)
    ours = load_f32(out, seqs, len(TINY_TOKENS))
    for s in range(seqs):
        diff, tol, ties = check_against_reference(ours[s], ref, f"{name} {opts} seq {s}")
        print(f"{name} {opts}: max|diff| {diff:.3g} (tol {tol:.3g}), near-ties {ties}")


def test_reference_conventions_matter(tiny_models, tmp_path):
    """Guards the test itself: had Jarvis used the other RoPE pairing, or ignored the scaling,
    the reference would tell. The NumPy reference with a deliberately wrong convention must be
    far outside the tolerance from the right one."""
    path, ref = tiny_models["llama3_scaled"]
    wrong = Reference(str(path))
    wrong.inv_freq = 1.0 / (500000.0 ** (np.arange(0, 16, 2) / 16))  # scaling ignored
    assert np.abs(wrong.forward(TINY_TOKENS) - ref).max() > 100 * REL_TOL * np.abs(ref).max()
    path, ref = tiny_models["llama_gqa"]
    wrong = Reference(str(path))
    _, raw = read_gguf(str(path))
    for l in range(3):  # Q/K left in llama.cpp's permuted order under half-split RoPE
        for n in ("attn_q", "attn_k"):
            wrong.t[f"blk.{l}.{n}.weight"] = raw[f"blk.{l}.{n}.weight"].astype(np.float64)
    assert np.abs(wrong.forward(TINY_TOKENS) - ref).max() > 100 * REL_TOL * np.abs(ref).max()


# ---- (c) shards: layers split over separately loaded models, hidden states passed by file ----

def run_split(model, tokens, bounds, tmp_path, **opts):
    """Runs [b0,b1), [b1,b2), ... as separate processes; returns the last one's logits."""
    hidden = None
    for i in range(len(bounds) - 1):
        args = dict(opts, first_layer=bounds[i], end_layer=bounds[i + 1])
        if hidden is not None:
            args["in_hidden"] = hidden
        last = i == len(bounds) - 2
        if not last:
            hidden = tmp_path / f"hidden{i}.f32"
            args["out_hidden"] = hidden
            args["no_logits"] = True
        out, _ = run_logits(model, tokens, tmp_path, name=f"shard{i}", **args)
    return load_f32(out, opts.get("seqs", 1), len(tokens))


def test_tiny_shards_equal_full_model(tiny_models, tmp_path):
    path, ref = tiny_models["llama_gqa"]
    full_out, _ = run_logits(path, TINY_TOKENS, tmp_path, name="full", threads=2)
    full = load_f32(full_out, 1, len(TINY_TOKENS))
    for bounds in ([0, 1, 3], [0, 1, 2, 3], [0, 3, 3], [0, 0, 3]):
        split = run_split(path, TINY_TOKENS, bounds, tmp_path, threads=2, chunk=9)
        check_against_reference(split[0], ref, f"llama_gqa split {bounds}")
        # The same float32 operations run in the same order whichever process holds a layer.
        np.testing.assert_array_equal(split, full, err_msg=f"split {bounds}")


def test_smollm2_two_shards_match_reference(smollm, tmp_path):
    tokens, ref = smollm
    split = run_split(SMOLLM, tokens, [0, 12, 30], tmp_path, threads=2, chunk=20, decode=4)
    diff, tol, _ = check_against_reference(split[0], ref, "SmolLM2 split [0,12)+[12,30)")
    print(f"SmolLM2 shards: max|diff| {diff:.3g} (tol {tol:.3g})")


def parse_report(stderr):
    line = [l for l in stderr.splitlines() if l.startswith("weights_bytes=")][-1]
    return {k: int(v) for k, v in (kv.split("=") for kv in line.split())}


def expected_weight_bytes(path, layers, embedding, head):
    """Float32 bytes of the tensors a shard should hold, counted from the GGUF via `gguf`."""
    import gguf
    r = gguf.GGUFReader(str(path))
    names = {t.name: int(np.prod(t.shape)) for t in r.tensors}
    total = sum(n for name, n in names.items() if any(name.startswith(f"blk.{l}.") for l in layers))
    tied = "output.weight" not in names
    if embedding or (head and tied):
        total += names["token_embd.weight"]
    if head:
        total += names["output_norm.weight"] + names.get("output.weight", 0)
    return 4 * total


def test_smollm2_shard_memory_is_its_share(smollm, tmp_path):
    tokens = smollm[0][:4]
    _, full = run_logits(SMOLLM, tokens, tmp_path, name="full", report="")
    _, first = run_logits(SMOLLM, tokens, tmp_path, name="first", first_layer=0, end_layer=1,
                          out_hidden=tmp_path / "h0.f32", no_logits=True, report="")
    _, mid = run_logits(SMOLLM, tokens, tmp_path, name="mid", first_layer=5, end_layer=6,
                        in_hidden=tmp_path / "h0.f32", out_hidden=tmp_path / "h1.f32", no_logits=True,
                        report="")
    full, first, mid = parse_report(full.stderr), parse_report(first.stderr), parse_report(mid.stderr)
    print(f"SmolLM2 memory: full {full}, layer 0 + embedding {first}, layer 5 alone {mid}")
    assert full["weights_bytes"] == expected_weight_bytes(SMOLLM, range(30), True, True)
    assert first["weights_bytes"] == expected_weight_bytes(SMOLLM, [0], True, False)
    assert mid["weights_bytes"] == expected_weight_bytes(SMOLLM, [5], False, False)
    # Resident memory follows the weights held, not the file: the mapped pages of tensors read
    # are handed back. 48 MB covers the process, parsed metadata (49k-token vocabulary) and
    # the activations; a shard that dequantized everything would be ~540 MB.
    slack_kb = 48 * 1024
    for rep in (full, first, mid):
        assert rep["rss_kb"] < rep["weights_bytes"] // 1024 + slack_kb, rep
    assert mid["hwm_kb"] < full["hwm_kb"] / 10


# ---- (d) malformed models: a clear error naming the problem, exit code 1, no crash ----

MALFORMED = {
    "shape": (dict(override_shape={"blk.1.attn_k.weight": (64, 96)}),
              ["blk.1.attn_k.weight", "[96, 64]", "expected [96, 32]"]),
    "missing": (dict(skip=("blk.0.ffn_up.weight",)), ["missing tensor", "blk.0.ffn_up.weight"]),
    "missing_head_norm": (dict(skip=("output_norm.weight",)), ["missing tensor", "output_norm.weight"]),
    "embedding_vocab": (dict(override_shape={"token_embd.weight": (299, 96)}),
                        ["token_embd.weight", "[96, 299]", "expected [96, 300]"]),
    "arch": (dict(arch="mamba"), ["unsupported architecture 'mamba'", "llama, qwen2, gemma"]),
    "rope_scaling": (dict(rope_scaling=dict(type="yarn", factor=4.0)), ["rope.scaling.type 'yarn'"]),
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("shard", [None, (0, 1)])
def test_malformed_model_gives_clear_error(tmp_path, case, shard):
    spec, needles = MALFORMED[case]
    base = dict(arch="llama", n_layers=2, hidden=96, n_heads=6, n_kv_heads=2, ffn=128)
    path = write_tiny_model(tmp_path / f"{case}.gguf", **{**base, **spec})
    cmd = [str(LOGITS), "--model", str(path), "--tokens", "1,2,3", "--out", str(tmp_path / "l.f32")]
    if shard:  # a shard that does not load the broken tensor still refuses the file
        cmd += ["--first-layer", str(shard[0]), "--end-layer", str(shard[1])]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert str(path) in res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr
