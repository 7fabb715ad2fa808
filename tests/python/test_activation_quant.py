"""The NumPy activation quantizer (activation_quant.py) against values worked out by hand from the
rule (kernels/cpu/quant/quant_kernels.h): the model-level tests lean on it, so it is checked first.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

sys.path.insert(0, str(Path(__file__).resolve().parent))
from activation_quant import (activation_block, quantize_blocks, quantize_dequantize,  # noqa: E402
                              rounding_margin)


def test_formats_follow_the_weight_type():
    assert [activation_block(t) for t in (T.Q8_0, T.Q4_0, T.Q5_0, T.Q4_1, T.Q5_1)] == [32] * 5
    assert [activation_block(t) for t in (T.Q4_K, T.Q5_K, T.Q6_K)] == [256] * 3
    assert [activation_block(t) for t in (T.F32, T.F16, T.BF16)] == [None] * 3
    with pytest.raises(ValueError, match="Q2_K"):
        activation_block(T.Q2_K)


def test_hand_worked_block_rounds_half_to_even():
    # amax 127 makes d = 1 and id = 1 exactly, so x * id is x and the ties are exact.
    x = np.zeros(64, dtype=np.float32)
    x[:8] = [127, 2.5, 3.5, -2.5, -3.5, 0.5, 1.5, -0.49]
    x[32:35] = [0.0, 0.0, 0.0]  # second block all zero: d = 0, every q = 0
    q, d = quantize_blocks(x, 32)
    assert d.tolist() == [1.0, 0.0]
    assert q[:8].tolist() == [127, 2, 4, -2, -4, 0, 2, -0]
    assert not q[8:].any()
    v = quantize_dequantize(x, T.Q4_1)
    assert v[:8].tolist() == [127, 2, 4, -2, -4, 0, 2, 0] and not v[8:].any()


def test_scale_is_float32_amax_over_127():
    x = np.array([1.27, -0.3, 0.635] + [0.0] * 29, dtype=np.float32)
    q, d = quantize_blocks(x, 32)
    d32 = np.float32(1.27) / np.float32(127)
    assert d.dtype == np.float32 and d[0] == d32
    inv = np.float32(1) / d32
    assert q[:3].tolist() == [np.rint(np.float32(v) * inv) for v in x[:3]]
    assert q[0] == 127  # the largest element always maps to +-127


def test_subnormal_scale_makes_a_zero_block():
    x = np.zeros(32, dtype=np.float32)
    x[0] = 1e-37  # normal, but 1e-37 / 127 is subnormal
    q, d = quantize_blocks(x, 32)
    assert d[0] == 0 and not q.any()
    x[0] = 127 * np.finfo(np.float32).tiny  # d exactly FLT_MIN: still quantized
    q, d = quantize_blocks(x, 32)
    assert d[0] == np.finfo(np.float32).tiny and q[0] == 127


def test_blocks_are_independent_and_error_within_half_a_step():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((5, 512)) * np.logspace(-3, 2, 512)).astype(np.float32)  # scales vary per block
    for t, block in ((T.Q8_0, 32), (T.Q6_K, 256)):
        v = quantize_dequantize(x, t)
        _, d = quantize_blocks(x, block)
        step = np.repeat(d, block, axis=-1).astype(np.float64)
        err = np.abs(v - x.astype(np.float64))
        assert np.all(err <= step / 2 * (1 + 1e-6)), t.name
        assert err.max() > 0  # it does quantize
        # each block is quantized on its own: changing one block leaves the others' values alone
        y = x.copy()
        y[:, :block] *= 1000
        assert np.array_equal(quantize_dequantize(y, t)[:, block:], v[:, block:])
    assert np.array_equal(quantize_dequantize(x, T.F16), x.astype(np.float64))


def test_row_length_must_be_whole_blocks():
    with pytest.raises(ValueError, match="multiple of the 256"):
        quantize_blocks(np.ones(576, dtype=np.float32), 256)


def test_rounding_margin_measures_distance_to_a_tie():
    x = np.zeros(32, dtype=np.float32)
    x[:4] = [127, 2.5, 2.75, 3.0]
    margin, d = rounding_margin(x, T.Q8_0)
    assert margin[:4].tolist() == [0.5, 0.0, 0.25, 0.5]
    assert np.all(d == 1.0)
