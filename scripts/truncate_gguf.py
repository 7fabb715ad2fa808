#!/usr/bin/env python3
"""Copy a GGUF model keeping only its first N layers (metadata, tokenizer, embedding and head kept).

Why: the GPU machines start bare and a device run carries at most 64 MiB, less than the default
model (98 MB). An 8-layer SmolLM2 is a real checkpoint's weights, tokenizer and shapes at half the
size, enough for the GPU-vs-CPU comparison in tests/gpu/model/ (JARVIS_TEST_MODEL=<the copy>).
Its outputs are not the full model's; the tests compare two backends on the same file.

  scripts/truncate_gguf.py models/SmolLM2-135M-Instruct.Q4_1.gguf .gpu-model/smollm2-8l.gguf --layers 8
"""
import argparse
import re
import sys

import gguf


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--layers", type=int, required=True)
    args = ap.parse_args()

    reader = gguf.GGUFReader(args.input)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    block_key = f"{arch}.block_count"
    n_layers = reader.get_field(block_key).contents()
    if not 1 <= args.layers <= n_layers:
        print(f"--layers must be in [1, {n_layers}]", file=sys.stderr)
        return 2

    writer = gguf.GGUFWriter(args.output, arch=arch)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        val_type = field.types[0]
        sub_type = field.types[-1] if val_type == gguf.GGUFValueType.ARRAY else None
        value = args.layers if field.name == block_key else field.contents()
        writer.add_key_value(field.name, value, val_type, sub_type=sub_type)

    layer_re = re.compile(r"^blk\.(\d+)\.")
    kept = [t for t in reader.tensors
            if not (m := layer_re.match(t.name)) or int(m.group(1)) < args.layers]
    for t in kept:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in kept:
        writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
    writer.close()
    print(f"{args.output}: {args.layers} of {n_layers} layers, {len(kept)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
