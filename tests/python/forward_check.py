"""Shared by the forward-pass reference tests: runs tools/jarvis-logits and compares its
logits with the independent NumPy reference (numpy_reference.py).

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

Weights. This tolerance is for float32 arithmetic over the dequantized weights, so run_logits
loads with `--weights f32` (the reference path) unless a test asks for `weights="native"`: the
native kernels quantize activations to 8 bits, which moves logits by ~1e-2 (their own reference
applies the same quantization).
"""
import os
import subprocess
from pathlib import Path

import numpy as np

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
    opts.setdefault("weights", "f32")
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
