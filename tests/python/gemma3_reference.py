"""Independent NumPy forward pass of Gemma 3's text decoder, for the reference tests.

Written from the published definition (Hugging Face transformers' Gemma3ForCausalLM /
Gemma3TextModel), over the PyPI `gguf` package's dequantized tensors (numpy_reference.read_gguf),
never from Jarvis:
- the embedding is multiplied by sqrt(hidden) rounded to the checkpoint's dtype (bfloat16:
  Gemma3TextScaledWordEmbedding casts its scale to the weight dtype): 25.25 for hidden 640, not
  25.298 (`embed_scale="exact"` takes the unrounded root, as llama.cpp does; see the self-check);
- RMSNorm is x / rms(x) * (1 + w): llama.cpp's converter stores every "*norm.weight" (QK norms
  included) as w + 1 already, so the GGUF weight multiplies as it is;
- each layer: input norm, Q/K/V, RMSNorm of each query and key head over head_dim, RoPE
  (rotate_half; local layers base 10000, global layers the file's base, 1e6, with the file's RoPE
  scaling if any), scores scaled by query_pre_attn_scalar^-0.5, soft-capped only if the file says
  so, causal mask, and on local layers a sliding window (key i visible from query j when
  j - window < i <= j); post-attention norm, residual; pre-FFN norm, GELU-tanh(gate) * up, down,
  post-FFN norm, residual;
- layer i is global when (i + 1) % 6 == 0 (the published sliding_window_pattern 6: layers 5, 11,
  17 of 18), unless the file stores a per-layer pattern;
- final norm, the tied head (token_embd), final soft-capping only if the file says so.
query_pre_attn_scalar is not in the GGUF: it is head_dim (256) for the 270M, 1B, 4B and 12B
checkpoints (27B uses hidden / heads); `gemma3.attention.query_pre_attn_scalar` wins if present.

Self-check (manual; the test test_gemma3_reference.py runs the 64-token part in float32):
    .venv/bin/python tests/python/gemma3_reference.py                  # 64 tokens, float32
    .venv/bin/python tests/python/gemma3_reference.py --tokens 1200    # local layers really mask
    .venv/bin/python tests/python/gemma3_reference.py --dtype float64 --compare-float32  # rounding
It prints the top-5 next tokens after "The capital of France is", greedy continuations of it, of
QA_PROMPT and of the question as a Gemma chat turn, and the teacher-forced next-token accuracy over the prompt
(SHORT_TEXT, or README.md's text past 86 tokens, tokenized by the sentencepiece reference); on a
prompt longer than the window, the accuracy past it with the window and with local layers seeing
everything (the window at work); and how much the other embedding-scale choice moves logits.
"""
import argparse
import math
import sys
import time
from pathlib import Path

import gguf
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from numpy_reference import Reference, _field, inv_freq  # noqa: E402

SOURCE_DIR = Path(__file__).resolve().parents[2]
GEMMA3 = SOURCE_DIR / "models" / "gemma-3-270m-q4_k_m.gguf"
GLOBAL_EVERY = 6  # Gemma 3's sliding_window_pattern


def bfloat16_round(x):
    """x rounded to the nearest bfloat16 (ties to even), as float32."""
    bits = np.array(x, dtype=np.float32).view(np.uint32)
    bits = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return bits.view(np.float32)


def rope(x, pos, freqs, dtype):
    """x [T, H, D]: HF apply_rotary_pos_emb (rotate_half) over all of head_dim."""
    d = x.shape[-1]
    ang = np.outer(pos, freqs)
    emb = np.concatenate([ang, ang], axis=-1)
    cos, sin = np.cos(emb)[:, None, :].astype(dtype), np.sin(emb)[:, None, :].astype(dtype)
    rot = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], axis=-1)
    return x * cos + rot * sin


class Gemma3Reference(Reference):
    def __init__(self, path=GEMMA3, dtype=np.float32, reader=None, embed_scale="bfloat16"):
        reader = reader or gguf.GGUFReader(str(path))
        super().__init__(str(path), dtype=dtype, reader=reader)
        c = self.cfg
        assert c["arch"] == "gemma3", f"{path}: architecture {c['arch']!r}, not gemma3"
        a = "gemma3."
        c["window"] = _field(reader, a + "attention.sliding_window")
        c["local_theta"] = _field(reader, a + "rope.local.freq_base", 10000.0)
        c["query_scalar"] = _field(reader, a + "attention.query_pre_attn_scalar", c["head_dim"])
        c["attn_softcap"] = _field(reader, a + "attn_logit_softcapping")
        c["final_softcap"] = _field(reader, a + "final_logit_softcapping")
        pattern = _field(reader, a + "attention.sliding_window_pattern")
        if isinstance(pattern, list) and len(pattern) == c["n_layers"]:  # per layer: True = local
            self.global_layers = [not p for p in pattern]
        else:
            self.global_layers = [(i + 1) % GLOBAL_EVERY == 0 for i in range(c["n_layers"])]
        self.inv_freq_local = inv_freq(dict(c, theta=c["local_theta"], scaling_type="none"))
        root = math.sqrt(c["hidden"])
        self.embed_scale = float(bfloat16_round(root)) if embed_scale == "bfloat16" else root
        self.q_scale = c["query_scalar"] ** -0.5
        self.full_attention = False  # True: every layer global (shows what the window changes)

    def embed(self, tokens):
        return self.t["token_embd.weight"][np.asarray(tokens)] * self.dt(self.embed_scale)

    def layer(self, l, x):
        c, t, dt = self.cfg, self.t, self.dt
        T = x.shape[0]
        H, KV, D = c["n_heads"], c["n_kv_heads"], c["head_dim"]
        p = f"blk.{l}."
        is_global = self.global_layers[l] or self.full_attention
        h = self._norm(x, t[p + "attn_norm.weight"])
        q = self._norm((h @ t[p + "attn_q.weight"].T).reshape(T, H, D), t[p + "attn_q_norm.weight"])
        k = self._norm((h @ t[p + "attn_k.weight"].T).reshape(T, KV, D), t[p + "attn_k_norm.weight"])
        v = (h @ t[p + "attn_v.weight"].T).reshape(T, KV, D)
        pos = np.arange(T)
        freqs = self.inv_freq if self.global_layers[l] else self.inv_freq_local
        q, k = rope(q, pos, freqs, dt), rope(k, pos, freqs, dt)
        rep = H // KV
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)  # head h uses kv head h // rep
        s = np.einsum("thd,shd->hts", q, k) * dt(self.q_scale)
        if c["attn_softcap"]:
            s = np.tanh(s / c["attn_softcap"]) * c["attn_softcap"]
        seen = pos[:, None] >= pos[None, :]
        if not is_global:
            seen &= pos[:, None] - pos[None, :] < c["window"]
        s = np.where(seen[None], s, -np.inf)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s = s / s.sum(axis=-1, keepdims=True)
        o = np.einsum("hts,shd->thd", s, v).reshape(T, H * D) @ t[p + "attn_output.weight"].T
        x = x + self._norm(o, t[p + "post_attention_norm.weight"])
        h = self._norm(x, t[p + "ffn_norm.weight"])
        g, u = h @ t[p + "ffn_gate.weight"].T, h @ t[p + "ffn_up.weight"].T
        a = 0.5 * g * (1 + np.tanh(dt(math.sqrt(2 / math.pi)) * (g + dt(0.044715) * g ** 3)))  # gelu_pytorch_tanh
        f = (a * u) @ t[p + "ffn_down.weight"].T
        return x + self._norm(f, t[p + "post_ffw_norm.weight"])

    def logits(self, x):
        out = self._norm(x, self.t["output_norm.weight"]) @ self.t["token_embd.weight"].T
        if self.cfg["final_softcap"]:
            out = np.tanh(out / self.cfg["final_softcap"]) * self.cfg["final_softcap"]
        return out

    def forward(self, tokens, positions=None):
        """Logits [len(positions), vocab] (every position by default)."""
        x = self.embed(tokens)
        for l in range(self.cfg["n_layers"]):
            x = self.layer(l, x)
        return self.logits(x if positions is None else x[positions])

    def greedy(self, tokens, n):
        out = list(tokens)
        for _ in range(n):
            out.append(int(self.forward(out, positions=[-1])[0].argmax()))
        return out[len(tokens):]


# Tolerance for our engine against this reference in float64, the rule forward_check.py justifies
# for SmolLM2 (1e-5 x max|logit|, ~4x the spread float32 rounding alone makes there). Measured here
# (--dtype float64 --compare-float32, 64 tokens, max|logit| 46.1): this reference in float32 is
# 9.2e-5 = 2.0e-6 x max|logit| from float64 (SmolLM2: 2.3e-6), so the same rule leaves ~5x; the
# engine's own spread, once it runs gemma3, decides whether it holds. The embedding-scale choice
# alone (25.25 vs 25.298) moves logits by 0.099: the engine must make the reference's choice.
GEMMA3_REL_TOL = 1e-5


def compare_logits(ours, ref, what, rel_tol=GEMMA3_REL_TOL):
    """ours [n, vocab] (jarvis-logits' float32), ref [n, vocab] (this reference). Max |diff| within
    rel_tol x max|ref|; argmax equal at every position except numerical near-ties of the reference
    (top-2 margin under twice the tolerance), which may pick either and must stay few.
    Returns (max |diff|, tolerance, near-ties)."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} vs reference {ref.shape}"
    assert np.all(np.isfinite(ours)), f"{what}: non-finite logits"
    tol = rel_tol * float(np.abs(ref).max())
    diff = float(np.abs(ours.astype(np.float64) - ref).max())
    assert diff <= tol, f"{what}: max |diff| {diff:.3g} > tol {tol:.3g}"
    order = np.argsort(ref, axis=1)
    first, second = order[:, -1], order[:, -2]
    rows = np.arange(len(ref))
    ties = ref[rows, first] - ref[rows, second] < 2 * tol
    ours_arg = ours.argmax(axis=1)
    ok = (ours_arg == first) | (ties & (ours_arg == second))
    assert ok.all(), f"{what}: argmax differs at positions {np.nonzero(~ok)[0].tolist()}"
    assert ties.sum() <= max(1, len(ref) // 20), f"{what}: {int(ties.sum())} near-ties; degenerate prompt"
    return diff, tol, int(ties.sum())


# Plain English for the short prompt (86 tokens with <bos>); README.md's text for long ones.
SHORT_TEXT = ("The quick brown fox jumps over the lazy dog. In 1969, Apollo 11 landed on the Moon; Neil Armstrong "
              "and Buzz Aldrin walked on its surface while Michael Collins orbited above. The sky is blue because "
              "molecules in the air scatter blue light from the sun more than they scatter red light. When the sun "
              "sets, the light passes through more air, so the sky turns orange and red.")
QA_PROMPT = "Question: What is the capital of France?\nAnswer:"
# The 270M file is the pretrained model (no general.finetune "it"): a chat turn is printed, not
# checked; it repeats the question and writes "mendatang" where <end_of_turn> would go (an
# untrained embedding row), while QA_PROMPT is answered with " Paris".
CHAT_QUESTION = "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"


def prompt_tokens(sp_ref, n):
    """<bos> and n - 1 token ids (the sentencepiece reference's) of SHORT_TEXT, or of README.md
    when SHORT_TEXT is too short."""
    text = SHORT_TEXT if n <= 86 else (SOURCE_DIR / "README.md").read_text(encoding="utf-8")
    ids = [sp_ref.vocab["bos"]] + sp_ref.encode(text, parse_special=False)
    assert len(ids) >= n, f"the text gives only {len(ids)} tokens"
    return ids[:n]


def next_token_accuracy(ref, tokens):
    logits = ref.forward(tokens)
    return float(np.mean(logits[:-1].argmax(axis=1) == np.asarray(tokens[1:]))), logits


def main():
    from sentencepiece_ref import SentencePieceReference

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(GEMMA3))
    ap.add_argument("--tokens", type=int, default=64, help="prompt length for the accuracy check")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--compare-float32", action="store_true", help="with --dtype float64: the float32 spread")
    ap.add_argument("--embed-scale", default="bfloat16", choices=["bfloat16", "exact"])
    args = ap.parse_args()
    t0 = time.time()
    reader = gguf.GGUFReader(args.model)
    sp = SentencePieceReference(args.model, reader=reader)
    ref = Gemma3Reference(args.model, dtype=np.dtype(args.dtype).type, reader=reader, embed_scale=args.embed_scale)
    print(f"loaded in {time.time() - t0:.1f} s; global layers "
          f"{[i for i, g in enumerate(ref.global_layers) if g]}, window {ref.cfg['window']}, "
          f"embed scale {ref.embed_scale}, query scale {ref.q_scale:.5f}")

    def piece(i):
        return repr(sp.sp.IdToPiece(int(i)))

    question = [sp.vocab["bos"]] + sp.encode("The capital of France is", parse_special=False)
    t0 = time.time()
    last = ref.forward(question, positions=[-1])[0].astype(np.float64)
    prob = np.exp(last - last.max())
    prob /= prob.sum()
    top = np.argsort(last)[::-1][:5]
    print(f"'The capital of France is' -> top-5 ({time.time() - t0:.1f} s):")
    for i in top:
        print(f"  {int(i):6d} {piece(i):>14} logit {last[i]:8.3f}  p {prob[i]:.3f}")
    print("greedy:", repr(sp.sp.DecodeIds(ref.greedy(question, 8))))
    qa = [sp.vocab["bos"]] + sp.encode(QA_PROMPT, parse_special=False)
    print(f"{QA_PROMPT!r} -> {sp.sp.DecodeIds(ref.greedy(qa, 4))!r}")
    chat = [sp.vocab["bos"]] + sp.encode(CHAT_QUESTION, parse_special=True)
    print(f"chat {CHAT_QUESTION!r} -> {sp.sp.DecodeIds(ref.greedy(chat, 8))!r}")

    tokens = prompt_tokens(sp, args.tokens)
    t0 = time.time()
    acc, logits = next_token_accuracy(ref, tokens)
    print(f"{len(tokens)} tokens: next-token accuracy {acc:.3f}, max|logit| {np.abs(logits).max():.2f} "
          f"({time.time() - t0:.1f} s)")
    w = ref.cfg["window"]
    if len(tokens) > w:
        # Trained with the window, the model predicts worse past it when local layers see everything.
        ref.full_attention = True
        full = ref.forward(tokens, positions=slice(w, None))
        ref.full_attention = False
        late = logits[w:]
        nxt = np.asarray(tokens[w + 1:])
        print(f"  past the window: next-token accuracy {np.mean(late[:-1].argmax(1) == nxt):.3f}, "
              f"{np.mean(full[:-1].argmax(1) == nxt):.3f} if local layers saw everything (max |logit change| "
              f"{np.abs(full - late).max():.3f}, argmax changed at {int((full.argmax(1) != late.argmax(1)).sum())} "
              f"of {len(late)} positions)")
    if args.compare_float32 and args.dtype == "float64":
        ref32 = Gemma3Reference(args.model, dtype=np.float32, reader=reader, embed_scale=args.embed_scale)
        l32 = ref32.forward(tokens)
        d = np.abs(l32 - logits).max()
        print(f"  float32 vs float64: max |diff| {d:.3g} = {d / np.abs(logits).max():.3g} x max|logit|")
    saved = ref.embed_scale
    root = math.sqrt(ref.cfg["hidden"])
    ref.embed_scale = float(bfloat16_round(root)) if saved == root else root
    d = np.abs(ref.forward(tokens) - logits).max()
    print(f"  embed scale {ref.embed_scale:.5f} instead of {saved:.5f}: max |logit change| {d:.3g}")
    ref.embed_scale = saved

if __name__ == "__main__":
    main()
