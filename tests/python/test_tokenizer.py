"""Tokenizer ids against HF `tokenizers` over a hard corpus (tests/data/tokenizer_corpus.txt).

References are built independently of our code, from the model file's own vocabulary:
- SmolLM2 (GGUF, pre "smollm"): HF BPE over the GGUF's tokens and merges with the official
  SmolLM2 pre-tokenizer Sequence[Digits(individual_digits), ByteLevel(use_regex)].
- Each pre-tokenizer (SmolLM2's, GPT-2, Llama 3, Qwen2 with NFC): the official config over the same
  vocabulary plus merges that make every split visible (SmolLM2 alone has no multi-digit tokens);
  ours reads a GGUF copy whose tokenizer.ggml.pre names it, and the tokenizer.json HF saves.
- SentencePiece-style BPE: an HF BPE with byte fallback and Llama 2's "▁" normalizer, trained on
  half the corpus, written as GGUF tokenizer metadata (scores = -merge rank) and as tokenizer.json.
Every comparison is exact (ids, bytes); nothing here is a tolerance.
"""
import json
import subprocess

import pytest
from tokenizers import Tokenizer

from tokenizer_refs import (MODEL, TOOL, SPM_USER_DEFINED, byte_level_reference, corpus_lines, decode_all,
                            documents, encode_all, extended_vocab, first_mismatch, read_gguf_vocab, run_tool,
                            train_sentencepiece_like, write_gguf_tokenizer)

SPECIAL_TEXTS = ["<|im_start|>user\nhi<|im_end|>\n", "a<|endoftext|>b", "<|im_start|><|im_start|>",
                 "x <repo_name> y", "<|im_sta", "<<|im_end|>>"]


@pytest.fixture(scope="module")
def texts():
    lines = corpus_lines()
    return lines + documents(lines) + SPECIAL_TEXTS


@pytest.fixture(scope="module")
def vocab():
    return read_gguf_vocab(MODEL)


def hf_ids(tok, texts):
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def assert_same(texts, ours, refs, what):
    bad = sum(a != b for a, b in zip(ours, refs))
    assert bad == 0, f"{what}: {bad} of {len(texts)} texts differ; first:\n{first_mismatch(texts, ours, refs)}"


def test_corpus_is_hard(texts):
    lines = corpus_lines()
    assert len(lines) >= 2000
    joined = "\n".join(lines)
    for needle in ["\u4e2d", "\u0627", "\u05d0", "\u0915", "\u0e01", "\u0416", "\u03a9", "\ud55c", "\u200d",
                   "\U0001f3fd", "<|im_start|>", "IT'S", "'LL", "\u0301", "\u00a0", "\u3000", "\x1b", "\r",
                   "    ", "\t\t", "12345678901234567890", "\U00010d40"]:
        assert needle in joined, needle
    assert any("\n" in t for t in texts)


def test_smollm2_gguf_matches_hf(texts, vocab):
    ours = encode_all(MODEL, texts, parse_special=True)
    assert_same(texts, ours, hf_ids(byte_level_reference(vocab, "smollm"), texts), "parse_special")
    # Without parse_special the special-token strings are ordinary text.
    ours = encode_all(MODEL, texts, parse_special=False)
    assert_same(texts, ours, hf_ids(byte_level_reference(vocab, "smollm", with_specials=False), texts), "plain")


def test_smollm2_decode_and_round_trip(texts, vocab):
    ids = encode_all(MODEL, texts, parse_special=True)
    # Bytes whose byte-level char is missing from SmolLM2's vocabulary are dropped (HF does too).
    present = set(vocab["tokens"])
    byte_chars = _gpt2_byte_chars()
    missing = {b for b in range(256) if byte_chars[b] not in present}
    assert missing, "expected SmolLM2 to lack some byte tokens"
    decoded = decode_all(MODEL, ids)
    for text, got in zip(texts, decoded):
        assert got == bytes(b for b in text.encode("utf-8") if b not in missing), repr(text[:100])
    hf = byte_level_reference(vocab, "smollm")
    for skip in (False, True):
        ours = [d.decode("utf-8") for d in decode_all(MODEL, ids, skip_special=skip)]
        refs = hf.decode_batch(ids, skip_special_tokens=skip)
        assert ours == refs


def test_smollm2_add_bos_and_bad_ids():
    # SmolLM2's GGUF says add_bos_token = false: add_bos asks only for what the model wants.
    assert encode_all(MODEL, ["hi"], add_bos=True) == encode_all(MODEL, ["hi"], add_bos=False)
    res = run_tool(MODEL, "decode", [{"ids": [49152]}, {"ids": [-1]}, {"ids": [1, 2]}])
    assert "error" in res[0] and "error" in res[1] and "error" not in res[2]


def test_gguf_metadata(vocab):
    out = json.loads(subprocess.run([str(TOOL), "--model", str(MODEL), "info"], capture_output=True,
                                    check=True).stdout)
    assert out["model"] == "gpt2" and out["pre"] == "smollm" and out["vocab_size"] == len(vocab["tokens"])
    assert vocab["tokens"][out["eos_id"]] == "<|im_end|>" and vocab["tokens"][out["bos_id"]] == "<|im_start|>"
    assert "<|endoftext|>" in [vocab["tokens"][i] for i in out["eot_ids"]]
    assert out["chat_template"].startswith("{% for message in messages %}")


@pytest.mark.parametrize("pre", ["smollm", "gpt2", "llama-bpe", "qwen2"])
def test_pre_tokenizers_match_hf(pre, texts, vocab, tmp_path):
    vocab = extended_vocab(vocab)  # multi-digit, contraction and whitespace merges: splits show in ids
    path = tmp_path / f"{pre}.gguf"
    write_gguf_tokenizer(path, model="gpt2", pre=pre, tokens=vocab["tokens"], types=vocab["types"],
                         merges=vocab["merges"], bos=1, eos=2)
    hf = byte_level_reference(vocab, pre)
    refs = hf_ids(hf, texts)
    assert_same(texts, encode_all(path, texts), refs, f"{pre} via GGUF")
    # The same tokenizer as a tokenizer.json directory (our HF loader).
    hf_dir = tmp_path / f"{pre}-hf"
    hf_dir.mkdir()
    hf.save(str(hf_dir / "tokenizer.json"))
    assert_same(texts, encode_all(hf_dir, texts), refs, f"{pre} via tokenizer.json")
    if pre != "qwen2":  # NFC changes the text, so only the others round-trip
        ids = encode_all(path, texts)
        assert [d.decode("utf-8") for d in decode_all(path, ids)] == hf.decode_batch(ids, skip_special_tokens=False)


def test_smollm2_tokenizer_json(texts, vocab, tmp_path):
    hf = byte_level_reference(vocab, "smollm")
    hf.save(str(tmp_path / "tokenizer.json"))
    config = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "add_bos_token": False,
              "chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                               "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert_same(texts, encode_all(tmp_path, texts), hf_ids(hf, texts), "smollm via tokenizer.json")
    res = run_tool(tmp_path, "chat", [{"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": False}])
    assert res[0]["prompt"] == "<|im_start|>user\nhi<|im_end|>\n"


@pytest.fixture(scope="module")
def sentencepiece(tmp_path_factory):
    lines = corpus_lines()
    hf, tokens, types, scores, merges = train_sentencepiece_like(lines[::2])
    d = tmp_path_factory.mktemp("spm")
    gguf_path = d / "spm.gguf"
    write_gguf_tokenizer(gguf_path, model="llama", tokens=tokens, types=types, scores=scores, bos=1, eos=2, unk=0,
                         add_bos=True, add_space_prefix=True)
    hf_dir = d / "hf"
    hf_dir.mkdir()
    hf.save(str(hf_dir / "tokenizer.json"))
    (hf_dir / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True}))
    return {"hf": hf, "gguf": gguf_path, "hf_dir": hf_dir, "tokens": tokens, "types": types}


def test_sentencepiece_matches_hf(texts, sentencepiece):
    texts = texts + ["a " + SPM_USER_DEFINED + " b", "<s>x</s>", "<unk>", "  two leading", "\u2581already"]
    hf = sentencepiece["hf"]
    refs = hf_ids(hf, texts)
    byte_ids = {i for i, t in enumerate(sentencepiece["types"]) if t == 6}
    assert sum(any(i in byte_ids for i in r) for r in refs) > 50, "byte fallback should be exercised"
    for model in (sentencepiece["gguf"], sentencepiece["hf_dir"]):
        ours = encode_all(model, texts, parse_special=True)
        assert_same(texts, ours, refs, f"sentencepiece {model}")
        # add_bos: the model asks for BOS (<s> = 1) in front.
        assert encode_all(model, texts[:20], add_bos=True) == [[1] + r for r in refs[:20]]
        for skip in (False, True):
            got = [d.decode("utf-8") for d in decode_all(model, refs, skip_special=skip)]
            assert got == hf.decode_batch(refs, skip_special_tokens=skip)


def test_sentencepiece_plain_text_and_round_trip(texts, sentencepiece):
    # Reference without the control tokens: their strings are then plain text (byte fallback and all).
    plain = json.loads(sentencepiece["hf"].to_str())
    plain["added_tokens"] = [a for a in plain["added_tokens"] if not a["special"]]
    hf_plain = Tokenizer.from_str(json.dumps(plain))
    assert hf_plain.get_added_tokens_decoder()  # the user-defined token stays, as in ours
    refs = hf_ids(hf_plain, texts)
    ours = encode_all(sentencepiece["gguf"], texts, parse_special=False)
    assert_same(texts, ours, refs, "sentencepiece parse_special=false")
    # Round trip holds where "▁" is not in the text itself and no added token splits it.
    simple = [t for t in texts if "\u2581" not in t and SPM_USER_DEFINED not in t and t.strip(" ") == t]
    decoded = decode_all(sentencepiece["gguf"], encode_all(sentencepiece["gguf"], simple, parse_special=False))
    assert [d.decode("utf-8") for d in decoded] == simple


def _gpt2_byte_chars():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}
