"""Weight bytes one decode step reads from a GGUF file, as the file stores them, read with the
independent `gguf` package (not Jarvis's loader).

One token's decode reads every layer tensor once, the final norm, and the output head: `output.weight`,
or the token embedding when the head is tied to it. The embedding lookup itself reads one row
(negligible). An engine that keeps the weights in the file's blocks can read no fewer bytes than this
per step, so bandwidth / bytes is the decode ceiling of one stream.

    python benchmarks/cpu/gguf_bytes.py models/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import sys
from dataclasses import dataclass, field


@dataclass
class WeightBytes:
    layers: int = 0          # every blk.* tensor
    head: int = 0            # output.weight, or token_embd.weight when tied
    final_norm: int = 0      # output_norm.weight
    tied_head: bool = False
    file_bytes: int = 0
    by_type: dict = field(default_factory=dict)  # tensor type name -> bytes read per token

    @property
    def per_token(self):
        return self.layers + self.head + self.final_norm


def weight_bytes(path):
    import os

    import gguf

    reader = gguf.GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    out = WeightBytes(file_bytes=os.path.getsize(path))

    def count(t):
        n = int(t.n_bytes)
        out.by_type[t.tensor_type.name] = out.by_type.get(t.tensor_type.name, 0) + n
        return n

    for name, t in tensors.items():
        if name.startswith("blk."):
            out.layers += count(t)
    if "output_norm.weight" in tensors:
        out.final_norm = count(tensors["output_norm.weight"])
    head = tensors.get("output.weight")
    if head is None:
        head = tensors.get("token_embd.weight")
        out.tied_head = True
    if head is None:
        raise ValueError(f"{path}: neither output.weight nor token_embd.weight")
    out.head = count(head)
    return out


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    w = weight_bytes(argv[1])
    print(f"layers {w.layers} B, head {w.head} B{' (tied embedding)' if w.tied_head else ''}, "
          f"final norm {w.final_norm} B: {w.per_token} B = {w.per_token / 1e6:.1f} MB per token "
          f"(file {w.file_bytes / 1e6:.1f} MB)")
    for kind, n in sorted(w.by_type.items()):
        print(f"  {kind}: {n / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
