"""Dequantization and GGUF parsing checked against the PyPI `gguf` package (an independent reader).

Every tensor is written by `jarvis-gguf dequant` as raw float32 and compared with
`gguf.quants.dequantize` bit for bit (float32 bit patterns, so -0.0 vs 0.0 and NaN payloads count).
The only relaxation: where a block scale is itself inf or NaN, the product's NaN payload is not
specified by IEEE 754 (it depends on which operand the hardware propagates, which can differ
between NumPy's vector loops and ours), so there NaN positions must match but payloads may differ.
"""

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as Q
from gguf.constants import GGML_QUANT_SIZES

SOURCE_DIR = Path(os.environ.get("JARVIS_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BIN_DIR = Path(os.environ.get("JARVIS_BIN_DIR", SOURCE_DIR / "build" / "bin"))
TOOL = BIN_DIR / "jarvis-gguf"
MODEL = SOURCE_DIR / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

QUANTIZABLE = [Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0]  # gguf's numpy quantizers
ALL_TYPES = [Q.F32] + QUANTIZABLE + [Q.Q4_K, Q.Q5_K, Q.Q6_K]

# Byte offsets of the fp16 scale fields inside one block of each block-quantized type.
SCALE_FIELDS = {
    Q.Q4_0: [0], Q.Q4_1: [0, 2], Q.Q5_0: [0], Q.Q5_1: [0, 2], Q.Q8_0: [0],
    Q.Q4_K: [0, 2], Q.Q5_K: [0, 2], Q.Q6_K: [208],
}


def jarvis_dequant(path, name, tmp_path):
    out = tmp_path / (name.replace("/", "_") + ".f32")
    subprocess.run([str(TOOL), "dequant", str(path), name, str(out)], check=True)
    data = np.fromfile(out, dtype="<f4")
    out.unlink()
    return data


def reference(raw, qtype):
    with np.errstate(all="ignore"):  # inf/NaN scales are deliberate in some cases
        return np.ascontiguousarray(gguf.quants.dequantize(raw, qtype), dtype=np.float32).ravel()


def assert_bits_equal(got, want, what, nan_payload_free=False):
    assert got.shape == want.shape, f"{what}: {got.size} values, want {want.size}"
    gb, wb = got.view(np.uint32), want.view(np.uint32)
    diff = gb != wb
    if nan_payload_free:
        diff &= ~(np.isnan(got) & np.isnan(want))
    if diff.any():
        i = np.flatnonzero(diff)[:5]
        pytest.fail(f"{what}: {int(diff.sum())} of {got.size} differ, first at {i.tolist()}: "
                    f"got {[hex(x) for x in gb[i]]} want {[hex(x) for x in wb[i]]}")


def write_gguf(path, tensors, version=None):
    """tensors: list of (name, array, raw_dtype or None). Optionally patch the version field."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint32("test.answer", 42)
    w.add_array("test.list", [1, 2, 3])
    w.add_string("test.name", "jarvis")
    for name, arr, qtype in tensors:
        w.add_tensor(name, arr, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if version is not None:
        with open(path, "r+b") as f:
            f.seek(4)
            f.write(np.uint32(version).tobytes())


def finite_half_bits(rng, shape):
    """Random fp16 bit patterns that are finite (any sign, normal, subnormal or zero)."""
    bits = rng.integers(0, 1 << 16, size=shape, dtype=np.uint32).astype(np.uint16)
    inf_nan = (bits & 0x7C00) == 0x7C00
    bits[inf_nan] ^= 0x4000  # clear the exponent's top bit: finite, same mantissa
    return bits


def random_raw_blocks(rng, qtype, n_blocks, scale_bits=None):
    """Random but valid blocks: any quant bits, finite fp16 scales (or the given scale bits)."""
    _, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in SCALE_FIELDS[qtype]:
        bits = finite_half_bits(rng, n_blocks) if scale_bits is None else \
            np.resize(np.asarray(scale_bits, dtype=np.uint16), n_blocks)
        raw[:, off:off + 2] = bits.view(np.uint8).reshape(n_blocks, 2)
    return raw


# ---------------------------------------------------------------------------------------------
# (a) real tensors of the default model


@pytest.fixture(scope="module")
def model_reader():
    if not MODEL.exists():
        pytest.skip(f"default model missing: {MODEL} (run scripts/setup.sh)")
    return gguf.GGUFReader(str(MODEL))


def test_model_tensors_bit_exact(model_reader, tmp_path):
    # Layers 0 and 29 plus the embedding cover every type in the file (Q4_1, Q8_0, F32).
    picked = [t for t in model_reader.tensors
              if t.name.startswith(("blk.0.", "blk.29.")) or not t.name.startswith("blk.")]
    types = {t.tensor_type for t in picked}
    assert {Q.Q4_1, Q.Q8_0, Q.F32} <= types, types
    for t in picked:
        got = jarvis_dequant(MODEL, t.name, tmp_path)
        assert_bits_equal(got, reference(t.data, t.tensor_type), f"{t.name} ({t.tensor_type.name})")


def test_model_info_matches_gguf_reader(model_reader):
    out = subprocess.run([str(TOOL), "info", str(MODEL)], check=True, capture_output=True,
                         text=True).stdout
    assert re.search(r"^version: 3$", out, re.M)
    assert re.search(rf"^alignment: {model_reader.alignment}$", out, re.M)
    listed = re.findall(r"^  (\S+) (\w+) \[([\d, ]+)\]$", out, re.M)
    want = [(t.name, t.tensor_type.name, [int(d) for d in t.shape]) for t in model_reader.tensors]
    got = [(n, ty, [int(d) for d in dims.split(", ")]) for n, ty, dims in listed]
    assert got == want
    assert 'tokenizer.ggml.pre (str) = "smollm"' in out
    assert "llama.block_count (u32) = 30" in out


# ---------------------------------------------------------------------------------------------
# (b) random tensors, every supported type


def random_floats(rng, shape):
    """Values spanning many magnitudes, with zero rows (zero scales) and tiny rows (subnormal
    fp16 scales) mixed in."""
    x = rng.standard_normal(shape).astype(np.float32)
    x *= np.exp2(rng.integers(-20, 8, size=shape[:-1] + (1,))).astype(np.float32)
    x[0] = 0.0                   # all-zero blocks: d = 0, and m = 0 for Q4_1/Q5_1
    x[1] *= np.float32(1e-6)     # scales below 2^-14: fp16 subnormals
    return x


@pytest.mark.parametrize("qtype", QUANTIZABLE, ids=lambda q: q.name)
def test_quantized_random_bit_exact(qtype, tmp_path):
    rng = np.random.default_rng(1000 + int(qtype))
    tensors = []
    for shape in [(8, 256), (3, 4, 64), (2, 2, 2, 32), (1, 32)]:
        x = random_floats(rng, shape) if shape[0] > 1 else rng.standard_normal(shape).astype(np.float32)
        raw = gguf.quants.quantize(x, qtype)
        tensors.append((f"q{len(tensors)}", raw, qtype))
    path = tmp_path / "q.gguf"
    write_gguf(path, tensors)
    for name, raw, _ in tensors:
        assert_bits_equal(jarvis_dequant(path, name, tmp_path), reference(raw, qtype),
                          f"{qtype.name} {name}")


@pytest.mark.parametrize("qtype", list(SCALE_FIELDS), ids=lambda q: q.name)
def test_raw_random_blocks_bit_exact(qtype, tmp_path):
    # Every bit pattern of the quants, random finite scales including subnormals and zero.
    rng = np.random.default_rng(2000 + int(qtype))
    block_elems, type_size = GGML_QUANT_SIZES[qtype]
    raw = random_raw_blocks(rng, qtype, 96)
    zero = random_raw_blocks(rng, qtype, 4, scale_bits=[0x0000, 0x8000])
    subn = random_raw_blocks(rng, qtype, 4, scale_bits=[0x0001, 0x83FF, 0x0200, 0x8001])
    raw = np.concatenate([raw, zero, subn]).reshape(13, 8 * type_size)
    path = tmp_path / "r.gguf"
    write_gguf(path, [("r", raw, qtype)])
    assert_bits_equal(jarvis_dequant(path, "r", tmp_path), reference(raw, qtype), qtype.name)


@pytest.mark.parametrize("qtype", list(SCALE_FIELDS), ids=lambda q: q.name)
def test_nonfinite_scales(qtype, tmp_path):
    # inf, -inf, quiet and signalling NaN scales: NaN payloads of products are unspecified.
    rng = np.random.default_rng(3000 + int(qtype))
    raw = random_raw_blocks(rng, qtype, 8, scale_bits=[0x7C00, 0xFC00, 0x7E00, 0x7C01])
    path = tmp_path / "n.gguf"
    write_gguf(path, [("n", raw, qtype)])
    assert_bits_equal(jarvis_dequant(path, "n", tmp_path), reference(raw, qtype), qtype.name,
                      nan_payload_free=True)


@pytest.mark.parametrize("qtype", [Q.F16, Q.BF16], ids=lambda q: q.name)
def test_half_types_every_bit_pattern(qtype, tmp_path):
    # All 65536 encodings: zeros, subnormals, normals, infinities, quiet and signalling NaNs.
    # No arithmetic is involved, so NaN payloads must survive exactly.
    raw = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.uint8).reshape(256, 512)
    path = tmp_path / "h.gguf"
    write_gguf(path, [("h", raw, qtype)])
    assert_bits_equal(jarvis_dequant(path, "h", tmp_path), reference(raw, qtype), qtype.name)


def test_f32_passthrough(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 1 << 32, size=(5, 64), dtype=np.uint64).astype(np.uint32).view(np.float32)
    path = tmp_path / "f.gguf"
    write_gguf(path, [("f", x, None)])
    assert_bits_equal(jarvis_dequant(path, "f", tmp_path), x.ravel(), "F32")


# ---------------------------------------------------------------------------------------------
# GGUF versions and errors


def test_gguf_v2_parses(tmp_path):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    raw = gguf.quants.quantize(x, Q.Q8_0)
    path = tmp_path / "v2.gguf"
    write_gguf(path, [("w", raw, Q.Q8_0), ("b", x[0], None)], version=2)
    assert path.read_bytes()[4:8] == b"\x02\x00\x00\x00"
    out = subprocess.run([str(TOOL), "info", str(path)], check=True, capture_output=True,
                         text=True).stdout
    assert re.search(r"^version: 2$", out, re.M)
    assert "test.answer (u32) = 42" in out
    assert "test.list (arr) = i32[3] [1, 2, 3]" in out
    assert re.search(r"^  w Q8_0 \[64, 4\]$", out, re.M)
    assert re.search(r"^  b F32 \[64\]$", out, re.M)
    assert_bits_equal(jarvis_dequant(path, "w", tmp_path), reference(raw, Q.Q8_0), "v2 Q8_0")


def test_unsupported_version_rejected(tmp_path):
    path = tmp_path / "v1.gguf"
    write_gguf(path, [("b", np.zeros(32, np.float32), None)], version=1)
    r = subprocess.run([str(TOOL), "info", str(path)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "unsupported GGUF version 1" in r.stderr and str(path) in r.stderr


def test_truncated_file_rejected(tmp_path):
    path = tmp_path / "t.gguf"
    write_gguf(path, [("w", np.ones((4, 64), np.float32), None)])
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    r = subprocess.run([str(TOOL), "info", str(path)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "out of bounds" in r.stderr and "'w'" in r.stderr


def test_missing_file_and_tensor(tmp_path):
    r = subprocess.run([str(TOOL), "info", str(tmp_path / "nope.gguf")], capture_output=True,
                       text=True)
    assert r.returncode == 1 and "nope.gguf" in r.stderr
    path = tmp_path / "s.gguf"
    write_gguf(path, [("w", np.ones(32, np.float32), None)])
    r = subprocess.run([str(TOOL), "dequant", str(path), "missing", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "no tensor named 'missing'" in r.stderr
