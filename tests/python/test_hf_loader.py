"""HF checkpoint loading (config.json + safetensors): tiny random llama, qwen2 and gemma models
are written here (safetensors' numpy API, or raw bytes for BF16, which numpy lacks), run through
`jarvis-logits`, and compared with a NumPy forward pass written in this file from the Hugging
Face definitions (rotate_half RoPE, repeat_kv GQA, Gemma's (1 + w) norm and sqrt(hidden)
embedding scale, gelu_pytorch_tanh). Malformed checkpoints must fail with a clear message.
"""
import json
import math
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BIN = Path(os.environ.get("JARVIS_BIN_DIR", "build/bin"))
LOGITS = BIN / "jarvis-logits"
TOKENS = [1, 5, 17, 3, 250, 42, 7, 7, 99, 0, 12, 64, 128, 200, 31, 8, 2, 77, 150, 11]

# float32 engine vs float64 reference on the same (already rounded) weights: each logit is a
# few chains of <= 64-term float32 dot products through 2 layers, so the expected deviation is
# ~1e-6 of the logit scale (measured: 1-3e-7). 1e-5 leaves room for exp/tanh/sqrt
# implementation differences, while any convention error (RoPE pairing, norm offset, GQA
# mapping, scaling) moves logits by 10-100% of their scale.
RTOL_SCALE = 1e-5

pytestmark = pytest.mark.skipif(not LOGITS.exists(), reason=f"{LOGITS} not built")


# ---------------------------------------------------------------- checkpoint writers

def to_bf16_bits(x):
    """float32 -> bfloat16 bit patterns, round to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def write_raw_safetensors(path, tensors):
    """tensors: {name: (dtype string, shape, raw bytes)} laid out per the format spec."""
    header, blobs, off = {}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def write_tokenizer(d, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["the capital of france is paris", "hello world, hello there"] * 20, trainer)
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": False,
        "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"}))


def make_weights(cfg, rng):
    """HF-named float32 weights for cfg (a config.json dict)."""
    h, ffn, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // nh
    gemma = cfg["model_type"] == "gemma"

    def w(*shape, scale=None):
        scale = scale if scale is not None else 1.0 / math.sqrt(shape[-1])
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    def norm():
        # Gemma stores w with the 1 taken out; others store the multiplier itself.
        return (rng.standard_normal(h) * 0.2 + (0.0 if gemma else 1.0)).astype(np.float32)

    t = {"model.embed_tokens.weight": w(v, h, scale=1.0 if not gemma else 1.0 / math.sqrt(h)),
         "model.norm.weight": norm()}
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = w(v, h)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = norm()
        t[p + "post_attention_layernorm.weight"] = norm()
        t[p + "self_attn.q_proj.weight"] = w(nh * hd, h)
        t[p + "self_attn.k_proj.weight"] = w(nkv * hd, h)
        t[p + "self_attn.v_proj.weight"] = w(nkv * hd, h)
        t[p + "self_attn.o_proj.weight"] = w(h, nh * hd)
        if cfg["model_type"] == "qwen2":
            for n, rows in (("q", nh * hd), ("k", nkv * hd), ("v", nkv * hd)):
                t[p + f"self_attn.{n}_proj.bias"] = w(rows, scale=0.5)
        t[p + "mlp.gate_proj.weight"] = w(ffn, h)
        t[p + "mlp.up_proj.weight"] = w(ffn, h)
        t[p + "mlp.down_proj.weight"] = w(h, ffn)
    return t


BASE = {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
        "vocab_size": 300, "max_position_embeddings": 256, "rms_norm_eps": 1e-6, "rope_theta": 10000.0}


def llama_cfg():
    return dict(BASE, architectures=["LlamaForCausalLM"], model_type="llama", num_key_value_heads=2,
                hidden_act="silu", tie_word_embeddings=False,
                rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 64})


def qwen2_cfg():
    return dict(BASE, architectures=["Qwen2ForCausalLM"], model_type="qwen2", num_key_value_heads=1,
                hidden_act="silu", tie_word_embeddings=True, rope_theta=1000000.0,
                use_sliding_window=False, sliding_window=4096,
                rope_scaling={"type": "linear", "factor": 2.0})


def gemma_cfg():
    # head_dim 16 with 4 heads: q_dim 64 != hidden 32, as in real Gemma models.
    return dict(BASE, architectures=["GemmaForCausalLM"], model_type="gemma", num_key_value_heads=1,
                head_dim=16, hidden_act="gelu", hidden_activation="gelu_pytorch_tanh",
                tie_word_embeddings=True)


def write_checkpoint(d, cfg, seed, layout):
    """layout: 'single' (F32), 'sharded' (two files + index, MLP weights F16), 'bf16' (raw BF16).
    Returns the weights exactly as stored (after rounding), as float64."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg))
    write_tokenizer(d, cfg["vocab_size"])
    t = make_weights(cfg, np.random.default_rng(seed))
    stored = {}
    if layout == "single":
        save_file(t, str(d / "model.safetensors"), metadata={"format": "pt"})
        stored = t
    elif layout == "sharded":
        first, second = {}, {}
        for name, x in t.items():
            if ".mlp." in name:
                x = x.astype(np.float16)
            (first if ".layers.0." in name or "embed" in name else second)[name] = x
            stored[name] = x
        save_file(first, str(d / "model-00001-of-00002.safetensors"))
        save_file(second, str(d / "model-00002-of-00002.safetensors"))
        wm = {n: "model-00001-of-00002.safetensors" for n in first}
        wm.update({n: "model-00002-of-00002.safetensors" for n in second})
        (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    else:
        raw = {}
        for name, x in t.items():
            bits = to_bf16_bits(x)
            raw[name] = ("BF16", x.shape, bits.tobytes())
            stored[name] = from_bf16_bits(bits).reshape(x.shape)
        write_raw_safetensors(d / "model.safetensors", raw)
    return {k: np.asarray(v, dtype=np.float64) for k, v in stored.items()}


# ---------------------------------------------------------------- NumPy reference (HF maths)

def inv_frequencies(cfg, hd):
    inv = 1.0 / (cfg["rope_theta"] ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return inv / rs["factor"]
    assert kind == "llama3"
    factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
    return np.where(medium, smoothed, scaled)


def rotate_half(x):
    a, b = np.split(x, 2, axis=-1)
    return np.concatenate([-b, a], axis=-1)


def reference_forward(cfg, w, tokens, hidden_after_layer=None):
    """Logits [n, vocab] in float64, or the hidden state after `hidden_after_layer` layers."""
    h, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // nh
    eps = cfg["rms_norm_eps"]
    gemma = cfg["model_type"] == "gemma"
    n = len(tokens)

    def rms(x, weight):
        y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
        return y * ((1.0 + weight) if gemma else weight)

    def act(x):
        if gemma:
            return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        return x / (1 + np.exp(-x))

    ang = np.arange(n, dtype=np.float64)[:, None] * inv_frequencies(cfg, hd)[None, :]
    cos = np.cos(np.concatenate([ang, ang], axis=-1))[:, None, :]
    sin = np.sin(np.concatenate([ang, ang], axis=-1))[:, None, :]
    mask = np.triu(np.full((n, n), -np.inf), k=1)

    x = w["model.embed_tokens.weight"][tokens]
    if gemma:
        x = x * np.float32(math.sqrt(h))  # HF casts the normaliser to the hidden dtype (float32)
    for l in range(cfg["num_hidden_layers"]):
        if hidden_after_layer is not None and l == hidden_after_layer:
            return x
        p = f"model.layers.{l}."
        a = rms(x, w[p + "input_layernorm.weight"])

        def proj(name):
            y = a @ w[p + f"self_attn.{name}_proj.weight"].T
            if p + f"self_attn.{name}_proj.bias" in w:
                y = y + w[p + f"self_attn.{name}_proj.bias"]
            return y

        q = proj("q").reshape(n, nh, hd)
        k = proj("k").reshape(n, nkv, hd)
        v = proj("v").reshape(n, nkv, hd)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        out = np.empty((n, nh, hd))
        for head in range(nh):
            kv = head // (nh // nkv)  # repeat_kv
            s = q[:, head, :] @ k[:, kv, :].T / math.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            out[:, head, :] = (s / s.sum(axis=-1, keepdims=True)) @ v[:, kv, :]
        x = x + out.reshape(n, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
        m = rms(x, w[p + "post_attention_layernorm.weight"])
        gate = m @ w[p + "mlp.gate_proj.weight"].T
        up = m @ w[p + "mlp.up_proj.weight"].T
        x = x + (act(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    if hidden_after_layer is not None:
        return x
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return rms(x, w["model.norm.weight"]) @ head.T


# ---------------------------------------------------------------- running the engine

def run_logits(model_dir, tmp_path, *extra, tokens=TOKENS, out="logits.f32", check=True):
    # RTOL_SCALE is float32 arithmetic over float weights: the reference path (--weights f32)
    # unless a test names the format (the native kernels quantize activations to 8 bits).
    weights = [] if "--weights" in extra else ["--weights", "f32"]
    cmd = [str(LOGITS), "--model", str(model_dir), "--tokens", ",".join(map(str, tokens)), *weights, *extra]
    if out:
        cmd += ["--out", str(tmp_path / out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def assert_close(got, ref):
    scale = np.abs(ref).max()
    err = np.abs(got - ref).max()
    assert err <= RTOL_SCALE * scale, f"max |diff| {err:.3g} vs scale {scale:.3g}"


MODELS = {"llama": (llama_cfg, "sharded"), "qwen2": (qwen2_cfg, "single"), "gemma": (gemma_cfg, "bf16")}


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_logits_match_reference(tmp_path, arch):
    make_cfg, layout = MODELS[arch]
    cfg = make_cfg()
    d = tmp_path / arch
    w = write_checkpoint(d, cfg, seed=len(arch), layout=layout)
    ref = reference_forward(cfg, w, TOKENS)
    run_logits(d, tmp_path)
    got = np.fromfile(tmp_path / "logits.f32", dtype=np.float32).reshape(len(TOKENS), cfg["vocab_size"])
    assert_close(got, ref)
    # Through the KV cache: chunked prefill, then one token per step.
    run_logits(d, tmp_path, "--chunk", "6", "--decode", "5", out="steps.f32")
    steps = np.fromfile(tmp_path / "steps.f32", dtype=np.float32).reshape(len(TOKENS), cfg["vocab_size"])
    assert_close(steps, ref)


def test_pipeline_shards_load_only_their_part(tmp_path):
    cfg = llama_cfg()
    d = tmp_path / "m"
    w = write_checkpoint(d, cfg, seed=3, layout="sharded")
    # Rank 0: embedding + layer 0 (no head); rank 1: layer 1 + head.
    run_logits(d, tmp_path, "--end-layer", "1", "--out-hidden", str(tmp_path / "h.f32"), out=None)
    hidden = np.fromfile(tmp_path / "h.f32", dtype=np.float32).reshape(len(TOKENS), cfg["hidden_size"])
    assert_close(hidden, reference_forward(cfg, w, TOKENS, hidden_after_layer=1))
    run_logits(d, tmp_path, "--first-layer", "1", "--in-hidden", str(tmp_path / "h.f32"))
    got = np.fromfile(tmp_path / "logits.f32", dtype=np.float32).reshape(len(TOKENS), cfg["vocab_size"])
    assert_close(got, reference_forward(cfg, w, TOKENS))


# ---------------------------------------------------------------- malformed checkpoints

def expect_failure(tmp_path, model_dir, *needles):
    r = run_logits(model_dir, tmp_path, check=False)
    assert r.returncode != 0, "accepted a broken checkpoint"
    for needle in needles:
        assert needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "terminate" not in r.stderr


@pytest.fixture
def good(tmp_path):
    d = tmp_path / "good"
    write_checkpoint(d, qwen2_cfg(), seed=1, layout="single")
    return d


def test_missing_config_key(tmp_path, good):
    cfg = json.loads((good / "config.json").read_text())
    del cfg["num_hidden_layers"]
    (good / "config.json").write_text(json.dumps(cfg))
    expect_failure(tmp_path, good, "config.json", "num_hidden_layers")


def test_unsupported_architecture(tmp_path, good):
    cfg = json.loads((good / "config.json").read_text())
    cfg["model_type"], cfg["architectures"] = "gpt_neox", ["GPTNeoXForCausalLM"]
    (good / "config.json").write_text(json.dumps(cfg))
    expect_failure(tmp_path, good, "gpt_neox")


def test_missing_tensor(tmp_path):
    d = tmp_path / "m"
    cfg = qwen2_cfg()
    t = make_weights(cfg, np.random.default_rng(0))
    del t["model.layers.1.self_attn.k_proj.bias"]
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    save_file(t, str(d / "model.safetensors"))
    expect_failure(tmp_path, d, "missing tensor 'model.layers.1.self_attn.k_proj.bias'")


def test_wrong_shape(tmp_path):
    d = tmp_path / "m"
    cfg = qwen2_cfg()
    t = make_weights(cfg, np.random.default_rng(0))
    t["model.layers.0.mlp.up_proj.weight"] = t["model.layers.0.mlp.up_proj.weight"][:40]
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    save_file(t, str(d / "model.safetensors"))
    expect_failure(tmp_path, d, "model.layers.0.mlp.up_proj.weight", "shape [40, 32]", "[48, 32]")


def test_unsupported_dtype(tmp_path):
    d = tmp_path / "m"
    cfg = qwen2_cfg()
    t = make_weights(cfg, np.random.default_rng(0))
    t["model.norm.weight"] = np.arange(32, dtype=np.int32)
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    save_file(t, str(d / "model.safetensors"))
    expect_failure(tmp_path, d, "model.norm.weight", "dtype I32")


def test_header_out_of_bounds(tmp_path, good):
    f = good / "model.safetensors"
    data = bytearray(f.read_bytes())
    data[0:8] = struct.pack("<Q", len(data))  # header would run past the end of the file
    f.write_bytes(bytes(data))
    expect_failure(tmp_path, good, "model.safetensors", "past end of file")


def test_tensor_data_out_of_bounds(tmp_path, good):
    f = good / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])  # truncated: the last tensor's bytes are gone
    expect_failure(tmp_path, good, "model.safetensors", "outside the")


def test_index_names_missing_tensor(tmp_path):
    d = tmp_path / "m"
    write_checkpoint(d, llama_cfg(), seed=2, layout="sharded")
    index = json.loads((d / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.extra.weight"] = "model-00001-of-00002.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    expect_failure(tmp_path, d, "model.extra.weight")


def test_no_weights(tmp_path, good):
    (good / "model.safetensors").unlink()
    expect_failure(tmp_path, good, "no *.safetensors")


def stored_bytes(name, x, layout):
    """Bytes the loader holds for a tensor natively: a matrix as stored (F16/BF16 2, F32 4 bytes an
    element, per write_checkpoint's layout), a vector as float32."""
    if x.ndim < 2:
        return 4 * x.size
    half = layout == "bf16" or (layout == "sharded" and ".mlp." in name)
    return (2 if half else 4) * x.size


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_plan_counts_the_bytes_held(tmp_path, arch):
    """jarvis-plan reads the safetensors headers only; natively F16/BF16 count 2 bytes an element."""
    make_cfg, layout = MODELS[arch]
    cfg = make_cfg()
    d = tmp_path / arch
    w = write_checkpoint(d, cfg, seed=len(arch), layout=layout)
    for weights in ("native", "f32"):
        r = subprocess.run([str(BIN / "jarvis-plan"), "--model", str(d), "--ranks", "2", "--json", "--weights", weights],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        for rank in json.loads(r.stdout)["ranks"]:
            layers = range(rank["first_layer"], rank["end_layer"])
            want = 0
            for name, x in w.items():
                held = stored_bytes(name, x, layout) if weights == "native" else 4 * x.size
                in_layer = name.startswith("model.layers.") and int(name.split(".")[2]) in layers
                ends = (name == "model.embed_tokens.weight" and (rank["embedding"] or
                                                                 (rank["head"] and cfg["tie_word_embeddings"])))
                ends = ends or (rank["head"] and name in ("model.norm.weight", "lm_head.weight"))
                want += held if in_layer or ends else 0
            assert rank["weight_bytes"] == want, (weights, rank)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_native_weights_match_reference(tmp_path, arch):
    """F16/BF16/F32 held as stored: the kernels multiply float activations by them (no 8-bit
    activation step for these types), so the float tolerance holds."""
    make_cfg, layout = MODELS[arch]
    cfg = make_cfg()
    d = tmp_path / arch
    w = write_checkpoint(d, cfg, seed=len(arch), layout=layout)
    run_logits(d, tmp_path, "--weights", "native")
    got = np.fromfile(tmp_path / "logits.f32", dtype=np.float32).reshape(len(TOKENS), cfg["vocab_size"])
    assert_close(got, reference_forward(cfg, w, TOKENS))
