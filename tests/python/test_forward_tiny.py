"""Tiny random-weight llama / qwen2 / gemma GGUF models (written here with gguf.GGUFWriter)
through Jarvis's CPU forward pass against the independent NumPy reference; shard splits;
malformed files. Tolerance: see forward_check.py."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_check import (LOGITS, REL_TOL, check_against_reference, load_f32,  # noqa: E402
                           run_logits, run_split)
from numpy_reference import Reference, read_gguf  # noqa: E402
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


# ---- shards: layers split over separately loaded models, hidden states passed by file ----

def test_tiny_shards_equal_full_model(tiny_models, tmp_path):
    path, ref = tiny_models["llama_gqa"]
    full_out, _ = run_logits(path, TINY_TOKENS, tmp_path, name="full", threads=2)
    full = load_f32(full_out, 1, len(TINY_TOKENS))
    for bounds in ([0, 1, 3], [0, 1, 2, 3], [0, 3, 3], [0, 0, 3]):
        split = run_split(path, TINY_TOKENS, bounds, tmp_path, threads=2, chunk=9)
        check_against_reference(split[0], ref, f"llama_gqa split {bounds}")
        # The same float32 operations run in the same order whichever process holds a layer.
        np.testing.assert_array_equal(split, full, err_msg=f"split {bounds}")


# ---- malformed models: a clear error naming the problem, exit code 1, no crash ----

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
