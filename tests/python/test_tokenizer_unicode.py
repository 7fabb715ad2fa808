"""Every Unicode code point through our pre-tokenizers and NFC, against HF `tokenizers`.

Our character classes (\\p{L}, \\p{N}, \\s, Rust's is_numeric) and NFC tables are generated from
Unicode data (csrc/tokenizer/gen_unicode_tables.py); HF carries its own (Oniguruma, Rust std,
unicode-normalization-alignments). A class or table entry that differs for any code point changes
how text around it splits, and so the ids: each code point is embedded between separators of
every class. Exact comparison of ids.
"""
import random
import unicodedata

import pytest

from tokenizer_refs import (byte_level_reference, encode_all, extended_vocab, first_mismatch, read_gguf_vocab,
                            MODEL, write_gguf_tokenizer)

ALL_CODE_POINTS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
# After each code point: a space, a letter, a digit, a newline, an apostrophe, a tab... so that
# letters, numbers, spaces and the rest each split differently.
SEPARATORS = [" ", "a ", "1", "\n", " '", "\t", "  ", "x "]


def every_code_point_texts(chunk=512):
    texts = []
    for k in range(0, len(ALL_CODE_POINTS), chunk):
        part = ALL_CODE_POINTS[k:k + chunk]
        texts.append("".join(chr(c) + SEPARATORS[(c * 7) % len(SEPARATORS)] for c in part))
    return texts


def nfc_texts():
    """Decomposed forms, reordering and composition work: NFD of every decomposable char (Python's
    own Unicode data: only an input generator here), and random base + mark sequences."""
    rng = random.Random(7)
    decomposable = [chr(c) for c in ALL_CODE_POINTS if unicodedata.decomposition(chr(c))]
    marks = [chr(c) for c in ALL_CODE_POINTS if unicodedata.combining(chr(c))]
    texts = ["".join(unicodedata.normalize("NFD", ch) + " " for ch in decomposable[k:k + 256])
             for k in range(0, len(decomposable), 256)]
    for _ in range(400):
        texts.append("".join(rng.choice(decomposable) + "".join(rng.choice(marks) for _ in range(rng.randint(0, 4)))
                             for _ in range(16)))
    # Hangul: conjoining jamo sequences (L V, L V T, LV T) compose algorithmically.
    jamo = [chr(c) for c in list(range(0x1100, 0x1113)) + list(range(0x1161, 0x1176)) + list(range(0x11A8, 0x11C3))]
    texts.append("".join(rng.choice(jamo) for _ in range(3000)))
    return texts


@pytest.fixture(scope="module")
def vocab():
    return extended_vocab(read_gguf_vocab(MODEL))


def gguf_copy(vocab, pre, path):
    write_gguf_tokenizer(path, model="gpt2", pre=pre, tokens=vocab["tokens"], types=vocab["types"],
                         merges=vocab["merges"], bos=1, eos=2)
    return path


def check(path, hf, texts, what):
    refs = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    ours = encode_all(path, texts)
    bad = sum(a != b for a, b in zip(ours, refs))
    assert bad == 0, f"{what}: {bad} of {len(texts)} texts differ; first:\n{first_mismatch(texts, ours, refs)}"


def test_every_code_point_gpt2_regex_and_digits(vocab, tmp_path):
    # SmolLM2: Rust is_numeric (Digits), then \p{L}, \p{N}, \s of the GPT-2 regex (Oniguruma).
    path = gguf_copy(vocab, "smollm", tmp_path / "smollm.gguf")
    check(path, byte_level_reference(vocab, "smollm"), every_code_point_texts(), "smollm")


def test_every_code_point_qwen2_regex_and_nfc(vocab, tmp_path):
    # Qwen2: NFC first, then the Llama-3-style regex (\r\n classes, case-insensitive contractions).
    path = gguf_copy(vocab, "qwen2", tmp_path / "qwen2.gguf")
    hf = byte_level_reference(vocab, "qwen2")
    check(path, hf, every_code_point_texts(), "qwen2 every code point")
    check(path, hf, nfc_texts(), "qwen2 NFC")
