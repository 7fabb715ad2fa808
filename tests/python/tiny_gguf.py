"""Writes tiny random-weight GGUF models with the PyPI `gguf` package (GGUFWriter), laid out as
llama.cpp's converter lays out real ones: `llama` Q/K rows permuted for interleaved RoPE,
Gemma norm weights stored as 1 + w, tied heads as a missing output.weight."""
import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf.quants import quantize


def permute_qk(w, n_heads):
    """llama.cpp convert_hf_to_gguf permutation: HF half-split rows -> interleaved pairs."""
    rows = w.shape[0]
    hd = rows // n_heads
    return w.reshape(n_heads, 2, hd // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _store(writer, name, arr, qtype):
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if qtype == Q.F32:
        writer.add_tensor(name, arr)
    elif qtype == Q.F16:
        writer.add_tensor(name, arr.astype(np.float16))
    else:
        writer.add_tensor(name, quantize(arr, qtype), raw_dtype=qtype)


def write_tiny_model(path, arch="llama", n_layers=2, hidden=64, n_heads=4, n_kv_heads=2, head_dim=None,
                     ffn=128, vocab=300, tied=False, qkv_bias=False, rope_scaling=None, rope_freqs=None,
                     theta=10000.0, eps=1e-5, seed=0, qtypes=None, skip=(), override_shape=None,
                     extra=None):
    """qtypes: {tensor-name suffix: GGMLQuantizationType} (default F32). skip: tensor names left
    out. override_shape: {name: shape} stored instead of the right shape (malformed files).
    rope_scaling: dict(type=..., factor=..., ...) as metadata. rope_freqs: per-pair divisors."""
    rng = np.random.default_rng(seed)
    head_dim = head_dim or hidden // n_heads
    q_dim, kv_dim = n_heads * head_dim, n_kv_heads * head_dim
    qtypes = qtypes or {}
    override_shape = override_shape or {}
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{arch}")
    w.add_block_count(n_layers)
    w.add_context_length(512)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv_heads)
    if head_dim != hidden // n_heads:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_layer_norm_rms_eps(eps)
    w.add_rope_freq_base(theta)
    w.add_rope_dimension_count(head_dim)
    if rope_scaling:
        a = arch + ".rope.scaling."
        w.add_string(a + "type", rope_scaling["type"])
        w.add_float32(a + "factor", rope_scaling["factor"])
        for k in ("low_freq_factor", "high_freq_factor"):
            if k in rope_scaling:
                w.add_float32(a + k, rope_scaling[k])
        if "original_context_length" in rope_scaling:
            w.add_uint32(a + "original_context_length", rope_scaling["original_context_length"])
    for k, v in (extra or {}).items():
        w.add_string(k, v)
    # A minimal byte-level BPE vocabulary so the loader's tokenizer metadata is present.
    tokens = ["<unk>", "<s>", "</s>"] + [f"t{i}" for i in range(3, vocab)]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3] + [1] * (vocab - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def mat(rows, cols, scale=1.0):
        return rng.standard_normal((rows, cols)).astype(np.float32) * (scale / np.sqrt(cols))

    def norm_w(n):
        # Stored values near 1. For Gemma that is llama.cpp's convention (HF holds w_hf, the
        # converter writes 1 + w_hf); for the others the HF weight itself.
        return 1.0 + 0.1 * rng.standard_normal(n).astype(np.float32)

    tensors = {}
    tensors["token_embd.weight"] = rng.standard_normal((vocab, hidden)).astype(np.float32) * (
        0.3 if arch == "gemma" else 1.0)
    tensors["output_norm.weight"] = norm_w(hidden)
    if not tied:
        tensors["output.weight"] = mat(vocab, hidden, 2.0)
    if rope_freqs is not None:
        tensors["rope_freqs.weight"] = np.asarray(rope_freqs, dtype=np.float32)
    for l in range(n_layers):
        p = f"blk.{l}."
        wq, wk = mat(q_dim, hidden, 2.0), mat(kv_dim, hidden, 2.0)
        bq = bk = None
        if qkv_bias:
            bq = 0.5 * rng.standard_normal(q_dim).astype(np.float32)
            bk = 0.5 * rng.standard_normal(kv_dim).astype(np.float32)
        if arch == "llama":
            wq, wk = permute_qk(wq, n_heads), permute_qk(wk, n_kv_heads)
        tensors[p + "attn_norm.weight"] = norm_w(hidden)
        tensors[p + "attn_q.weight"] = wq
        tensors[p + "attn_k.weight"] = wk
        tensors[p + "attn_v.weight"] = mat(kv_dim, hidden)
        if qkv_bias:
            tensors[p + "attn_q.bias"] = bq
            tensors[p + "attn_k.bias"] = bk
            tensors[p + "attn_v.bias"] = 0.5 * rng.standard_normal(kv_dim).astype(np.float32)
        tensors[p + "attn_output.weight"] = mat(hidden, q_dim)
        tensors[p + "ffn_norm.weight"] = norm_w(hidden)
        tensors[p + "ffn_gate.weight"] = mat(ffn, hidden, 2.0)
        tensors[p + "ffn_up.weight"] = mat(ffn, hidden)
        tensors[p + "ffn_down.weight"] = mat(hidden, ffn)
    for name, arr in tensors.items():
        if name in skip:
            continue
        if name in override_shape:
            arr = rng.standard_normal(override_shape[name]).astype(np.float32)
        qtype = Q.F32
        for suffix, t in qtypes.items():
            if name.endswith(suffix) and arr.ndim == 2:
                qtype = t
        _store(w, name, arr, qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
