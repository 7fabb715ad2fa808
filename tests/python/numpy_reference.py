"""Independent NumPy forward pass of LLaMA-family decoders, for the reference tests.

Weights come from the PyPI `gguf` package (GGUFReader + gguf.quants.dequantize), never from
Jarvis. The maths follows the Hugging Face definitions of each architecture (LlamaForCausalLM,
Qwen2ForCausalLM, GemmaForCausalLM): half-split ("rotate_half") RoPE on un-permuted Q/K
weights, GQA by repeating K/V heads, float64 throughout (`dtype` can be lowered to float32 to
measure how much float32 rounding alone moves the result).
"""
import math

import numpy as np
import gguf
from gguf.quants import dequantize

from activation_quant import quantize_dequantize


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def read_gguf(path, reader=None):
    """(config dict, {name: float32 ndarray in row-major [rows, cols] / [n]})."""
    r = reader or gguf.GGUFReader(path)
    arch = _field(r, "general.architecture")
    a = arch + "."
    cfg = {
        "arch": arch,
        "n_layers": _field(r, a + "block_count"),
        "hidden": _field(r, a + "embedding_length"),
        "ffn": _field(r, a + "feed_forward_length"),
        "n_heads": _field(r, a + "attention.head_count"),
        "eps": _field(r, a + "attention.layer_norm_rms_epsilon", 1e-5),
        "theta": _field(r, a + "rope.freq_base", 10000.0),
        "scaling_type": _field(r, a + "rope.scaling.type", "none"),
        "scaling_factor": _field(r, a + "rope.scaling.factor", 1.0),
        "low_freq_factor": _field(r, a + "rope.scaling.low_freq_factor", 1.0),
        "high_freq_factor": _field(r, a + "rope.scaling.high_freq_factor", 4.0),
        "orig_ctx": _field(r, a + "rope.scaling.original_context_length", 8192),
    }
    cfg["n_kv_heads"] = _field(r, a + "attention.head_count_kv", cfg["n_heads"])
    cfg["head_dim"] = _field(r, a + "attention.key_length", cfg["hidden"] // cfg["n_heads"])
    cfg["rope_dim"] = _field(r, a + "rope.dimension_count", cfg["head_dim"])
    tensors = {}
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float32)
        tensors[t.name] = w.reshape(tuple(int(d) for d in reversed(t.shape)))
    return cfg, tensors


def unpermute_qk(w, n_heads):
    """Undo llama.cpp's convert_hf_to_gguf Q/K row permutation (interleaved RoPE pairs) to get
    the HF layout, where RoPE rotates the two halves of each head."""
    rows = w.shape[0]
    hd = rows // n_heads
    return w.reshape(n_heads, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def inv_freq(cfg):
    d = cfg["rope_dim"]
    f = 1.0 / (cfg["theta"] ** (np.arange(0, d, 2, dtype=np.float64) / d))
    st = cfg["scaling_type"]
    if st == "linear":
        f = f / cfg["scaling_factor"]
    elif st == "llama3":  # HF _compute_llama3_parameters
        factor, lo, hi, old = (cfg["scaling_factor"], cfg["low_freq_factor"], cfg["high_freq_factor"],
                               cfg["orig_ctx"])
        low_wl, high_wl = old / lo, old / hi
        wl = 2 * math.pi / f
        scaled = np.where(wl > low_wl, f / factor, f)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        mid = (wl >= high_wl) & (wl <= low_wl)
        f = np.where(mid, smoothed, scaled)
    elif st not in ("none", None):
        raise ValueError(st)
    return f


class Reference:
    def __init__(self, path, dtype=np.float64, reader=None, quantize_activations=False):
        reader = reader or gguf.GGUFReader(path)
        self.cfg, t = read_gguf(path, reader)
        self.dt = dtype
        self.quantize_activations = quantize_activations
        self.types = {ti.name: ti.tensor_type for ti in reader.tensors}
        c = self.cfg
        self.gemma = c["arch"] == "gemma"
        self.t = {k: v.astype(dtype) for k, v in t.items()}
        if c["arch"] == "llama":  # GGUF llama stores Q/K permuted; qwen2/gemma keep HF order
            for l in range(c["n_layers"]):
                for name, nh in (("attn_q", c["n_heads"]), ("attn_k", c["n_kv_heads"])):
                    key = f"blk.{l}.{name}.weight"
                    self.t[key] = unpermute_qk(self.t[key], nh)
        self.inv_freq = inv_freq(c)
        if "rope_freqs.weight" in t:  # llama.cpp's form of Llama 3.1 scaling: per-pair divisors
            self.inv_freq = self.inv_freq / t["rope_freqs.weight"].astype(np.float64)

    def _matmul(self, x, name):
        """x @ W.T for the weight `name`, on 8-bit-quantized x where the engine quantizes it."""
        if self.quantize_activations:
            x = quantize_dequantize(x, self.types[name]).astype(self.dt)
        return x @ self.t[name].T

    def _norm(self, x, w):
        if self.gemma:  # HF GemmaRMSNorm scales by (1 + w_hf); llama.cpp's converter stores w_hf + 1
            w_hf = w - 1
            w = 1 + w_hf
        var = np.mean(x * x, axis=-1, keepdims=True)
        return x / np.sqrt(var + self.cfg["eps"]) * w

    def embed(self, tokens):
        x = self.t["token_embd.weight"][np.asarray(tokens)]
        if self.gemma:
            x = x * np.sqrt(np.array(self.cfg["hidden"], dtype=self.dt))
        return x

    def _rope(self, x, pos):  # x [T, H, D]; HF apply_rotary_pos_emb on the first rope_dim dims
        d = self.cfg["rope_dim"]
        ang = np.outer(pos, self.inv_freq)  # [T, d/2]
        emb = np.concatenate([ang, ang], axis=-1)
        cos, sin = np.cos(emb)[:, None, :].astype(self.dt), np.sin(emb)[:, None, :].astype(self.dt)
        xr, xp = x[..., :d], x[..., d:]
        rot = np.concatenate([-xr[..., d // 2:], xr[..., : d // 2]], axis=-1)
        return np.concatenate([xr * cos + rot * sin, xp], axis=-1)

    def layer(self, l, x):
        c, t = self.cfg, self.t
        T = x.shape[0]
        H, KV, D = c["n_heads"], c["n_kv_heads"], c["head_dim"]
        p = f"blk.{l}."
        h = self._norm(x, t[p + "attn_norm.weight"])
        q, k, v = (self._matmul(h, p + n + ".weight") for n in ("attn_q", "attn_k", "attn_v"))
        if p + "attn_q.bias" in t:
            q, k, v = q + t[p + "attn_q.bias"], k + t[p + "attn_k.bias"], v + t[p + "attn_v.bias"]
        pos = np.arange(T)
        q = self._rope(q.reshape(T, H, D), pos)
        k = self._rope(k.reshape(T, KV, D), pos)
        v = v.reshape(T, KV, D)
        rep = H // KV
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)  # head h uses kv head h // rep
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(np.array(D, dtype=self.dt))
        s = np.where(np.tril(np.ones((T, T), dtype=bool))[None], s, -np.inf)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s = s / s.sum(axis=-1, keepdims=True)
        o = np.einsum("hts,shd->thd", s, v).reshape(T, H * D)
        x = x + self._matmul(o, p + "attn_output.weight")
        h = self._norm(x, t[p + "ffn_norm.weight"])
        g, u = self._matmul(h, p + "ffn_gate.weight"), self._matmul(h, p + "ffn_up.weight")
        if self.gemma:  # gelu_pytorch_tanh
            a = 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g ** 3)))
        else:  # silu
            a = g / (1 + np.exp(-g))
        return x + self._matmul(a * u, p + "ffn_down.weight")

    def head_name(self):
        return "output.weight" if "output.weight" in self.t else "token_embd.weight"  # tied

    def head_input(self, x):
        """What the lm_head multiplies: the final norm of the last layer's output."""
        return self._norm(x, self.t["output_norm.weight"])

    def logits(self, x):
        return self._matmul(self.head_input(x), self.head_name())

    def forward(self, tokens):
        x = self.embed(tokens)
        for l in range(self.cfg["n_layers"]):
            x = self.layer(l, x)
        return self.logits(x)
