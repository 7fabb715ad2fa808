"""Writes the small seed GGUF files of the fuzz corpus (tests/fuzz/seeds/) with the `gguf` writer.

Run: python tests/fuzz/make_seeds.py   (the outputs are committed; a few KB in all)
"""

from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q
from gguf.constants import GGML_QUANT_SIZES

OUT = Path(__file__).resolve().parent / "seeds"
rng = np.random.default_rng(5)


def write(name, fill, version=None, alignment=None):
    w = gguf.GGUFWriter(str(OUT / name), "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    fill(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if version is not None:
        path = OUT / name
        data = bytearray(path.read_bytes())
        data[4:8] = np.uint32(version).tobytes()
        path.write_bytes(bytes(data))


def metadata(w):
    w.add_uint8("m.u8", 200)
    w.add_int8("m.i8", -3)
    w.add_uint16("m.u16", 60000)
    w.add_int16("m.i16", -2)
    w.add_uint32("m.u32", 7)
    w.add_int32("m.i32", -7)
    w.add_float32("m.f32", 0.5)
    w.add_uint64("m.u64", 1 << 40)
    w.add_int64("m.i64", -(1 << 40))
    w.add_float64("m.f64", 0.25)
    w.add_bool("m.bool", True)
    w.add_string("m.str", "hello")
    w.add_array("m.strs", ["a", "bc", ""])
    w.add_array("m.ints", [1, 2, 3])
    w.add_array("m.nested", [[1, 2], [3]])


def raw_blocks(qtype, n_blocks):
    _, type_size = GGML_QUANT_SIZES[qtype]
    return rng.integers(0, 256, size=(1, n_blocks * type_size), dtype=np.uint8)


def small_blocks(w):
    for q in [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0]:
        w.add_tensor(q.name.lower(), gguf.quants.quantize(rng.standard_normal((1, 32)).astype(np.float32), q),
                     raw_dtype=q)
    w.add_tensor("f32", rng.standard_normal(4).astype(np.float32))


def k_quants(w):
    w.add_tensor("q4_k", raw_blocks(Q.Q4_K, 1), raw_dtype=Q.Q4_K)
    w.add_tensor("q6_k", raw_blocks(Q.Q6_K, 1), raw_dtype=Q.Q6_K)


def half_types(w):
    w.add_tensor("f16", rng.standard_normal((2, 3)).astype(np.float16))
    w.add_tensor("bf16", gguf.quants.quantize(rng.standard_normal((3, 2, 2)).astype(np.float32), Q.BF16),
                 raw_dtype=Q.BF16)


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    write("metadata.gguf", metadata)
    write("blocks.gguf", small_blocks)
    write("kquants.gguf", k_quants, alignment=16)
    write("v2_halves.gguf", half_types, version=2, alignment=8)
    for p in sorted(OUT.iterdir()):
        print(p.name, p.stat().st_size)
