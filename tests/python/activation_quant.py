"""The 8-bit activation quantization that Jarvis's quantized matmuls apply to their input rows,
written from its definition (the rule stated in kernels/cpu/quant/quant_kernels.h), not from the
C++ code, so the NumPy reference can apply it too.

The format follows the weight type the row is multiplied with: Q8_0/Q4_0/Q5_0 weights meet
32-element Q8_0 blocks, Q4_1/Q5_1 weights 32-element Q8_1 blocks, Q4_K/Q5_K/Q6_K weights
256-element Q8_K blocks; F32/F16/BF16 weights take the row as it is. Every format quantizes a block
the same way, in float32: amax = max |x|, d = amax / 127 (0 when that is below FLT_MIN: 1 / d of a
subnormal d would overflow), id = 1 / d (0 when d is 0), q = round-half-even(x * id). A block's values then stand for q * d. (Q8_1's stored d * sum(q) and
Q8_K's 16-element sums are the same values regrouped for the kernels' benefit; they add nothing
to what the product means, so they do not appear here.)
"""
import numpy as np
from gguf import GGMLQuantizationType as T

# Elements per activation block for each weight type; None: the row is used unquantized.
_BLOCK = {
    T.F32: None, T.F16: None, T.BF16: None,
    T.Q8_0: 32, T.Q4_0: 32, T.Q5_0: 32,  # Q8_0 activations
    T.Q4_1: 32, T.Q5_1: 32,              # Q8_1 activations
    T.Q4_K: 256, T.Q5_K: 256, T.Q6_K: 256,  # Q8_K activations
}


def activation_block(weight_type):
    """Block length of the activation format `weight_type` pairs with (None: float, no blocks)."""
    try:
        return _BLOCK[T(weight_type)]
    except KeyError:
        raise ValueError(f"no activation format for weight type {T(weight_type).name}") from None


def quantize_blocks(x, block):
    """(q int8-valued float32 array shaped like x, d float32 [..., n_blocks]) for rows x [..., n],
    n a multiple of `block`; computed in float32 exactly as the rule is written."""
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[-1]
    if n % block:
        raise ValueError(f"row length {n} is not a multiple of the {block}-element activation block")
    xb = x.reshape(*x.shape[:-1], n // block, block)
    amax = np.abs(xb).max(axis=-1)
    d = amax / np.float32(127)  # float32 / float32, rounded to float32
    d = np.where(d < np.finfo(np.float32).tiny, np.float32(0), d).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    q = np.rint(xb * inv[..., None])  # float32 product; np.rint rounds half to even
    return q.reshape(x.shape), d


def quantize_dequantize(x, weight_type):
    """The values the quantized kernels multiply `weight_type` weights with, for input rows x
    [..., n], in float64 (q * d is exact there); x itself (as float64) for float weight types."""
    block = activation_block(weight_type)
    if block is None:
        return np.asarray(x, dtype=np.float64)
    q, d = quantize_blocks(x, block)
    qb = q.astype(np.float64).reshape(*q.shape[:-1], -1, block)
    return (qb * d.astype(np.float64)[..., None]).reshape(q.shape)


def rounding_margin(x, weight_type):
    """(margin, d), both shaped like rows x [..., n]: how far each x * id lies from the nearest
    rounding boundary (a half-integer), in units of the block scale, and the block's d. Where the
    margin is within another implementation's float error, that implementation may round the
    other way (one step of d); callers widen their tolerance there by exactly that much."""
    block = activation_block(weight_type)
    if block is None:
        raise ValueError("float weight types take unquantized rows: no rounding boundaries")
    x = np.asarray(x, dtype=np.float32)
    _, d = quantize_blocks(x, block)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    xb = x.reshape(*x.shape[:-1], -1, block)
    s = (xb * inv[..., None]).astype(np.float64)
    margin = np.abs(s - np.floor(s) - 0.5)
    d_each = np.broadcast_to(d[..., None], xb.shape)
    return margin.reshape(x.shape), d_each.reshape(x.shape).astype(np.float64)
