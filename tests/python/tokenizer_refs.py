"""Shared pieces of the tokenizer reference tests: the corpus, the jarvis-tokenize driver, and HF
`tokenizers` references built from a GGUF file's own vocabulary (independent of our code)."""

import json
import os
import subprocess
from pathlib import Path

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

SOURCE_DIR = Path(os.environ.get("JARVIS_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BIN_DIR = Path(os.environ.get("JARVIS_BIN_DIR", SOURCE_DIR / "build" / "bin"))
TOOL = BIN_DIR / "jarvis-tokenize"
MODEL = SOURCE_DIR / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CORPUS = SOURCE_DIR / "tests" / "data" / "tokenizer_corpus.txt"

# The official pre-tokenizer regexes (tokenizer.json of Meta-Llama-3 and Qwen2).
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# GGUF token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def corpus_lines():
    text = CORPUS.read_bytes().decode("utf-8")
    return text.split("\n")[:-1]  # "\n" only: \r, \v, U+2028 ... stay inside lines


def documents(lines, count=250):
    """Multi-line documents: consecutive corpus lines joined by assorted line breaks."""
    joins = ["\n", "\r\n", "\n\n", "\n \n", " \n\t", "\n\n\n", "\r", "\n    "]
    docs = []
    step = max(1, len(lines) // count)
    for k in range(count):
        start = k * step
        group = lines[start:start + 2 + k % 7]
        docs.append(joins[k % len(joins)].join(group) + ("\n" if k % 3 == 0 else ""))
    # NUL and other bytes the corpus file leaves out, and edge cases.
    docs += ["", " ", "\n", "\x00", "a\x00b", "\x00<|im_start|>\x00", "\n\n\n", " \n ", "\t\n\t"]
    return docs


def run_tool(model, mode, requests):
    """Runs jarvis-tokenize over JSON lines; returns one parsed response per request."""
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests)
    proc = subprocess.run([str(TOOL), "--model", str(model), mode], input=payload.encode("utf-8"),
                          capture_output=True, timeout=600)
    # "\n" only: the JSON may hold U+2028, U+0085 raw, which str.splitlines() would cut at.
    out = [json.loads(line) for line in proc.stdout.decode("utf-8").split("\n") if line]
    assert len(out) == len(requests), proc.stderr.decode("utf-8", "replace")
    return out


def encode_all(model, texts, parse_special=True, add_bos=False):
    res = run_tool(model, "encode", [{"text": t, "parse_special": parse_special, "add_bos": add_bos} for t in texts])
    for r in res:
        assert "error" not in r, r
    return [r["ids"] for r in res]


def decode_all(model, id_lists, skip_special=False):
    res = run_tool(model, "decode", [{"ids": ids, "skip_special": skip_special} for ids in id_lists])
    return [bytes.fromhex(r["hex"]) for r in res]


def read_gguf_vocab(path):
    r = gguf.GGUFReader(str(path))

    def strings(key):
        f = r.fields[key]
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    types_field = r.fields["tokenizer.ggml.token_type"]
    return {
        "tokens": strings("tokenizer.ggml.tokens"),
        "types": [int(types_field.parts[i][0]) for i in types_field.data],
        "merges": strings("tokenizer.ggml.merges"),
    }


def _byte_level_chars():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + len(cs) - 188)
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_CHARS = _byte_level_chars()


def byte_level(text):
    return "".join(BYTE_CHARS[b] for b in text.encode("utf-8"))


def extended_vocab(vocab):
    """SmolLM2's vocabulary plus merges that make pre-tokenizer splits visible in the ids.

    SmolLM2 has single-digit tokens only, so digit grouping (Llama 3's \\p{N}{1,3}) would not show;
    nor would a space or newline attached to the wrong piece, or a contraction in another case.
    Added (last, so lowest priority): every 2- and 3-digit number, space + digit, contractions in
    every letter case and with U+017F, and whitespace/newline pairs."""
    tokens, types, merges = list(vocab["tokens"]), list(vocab["types"]), list(vocab["merges"])
    known = set(tokens)
    have = set(merges)

    def merge(a, b):
        for t in (a, b, a + b):
            if t not in known:
                known.add(t)
                tokens.append(t)
                types.append(NORMAL)
        if f"{a} {b}" not in have:
            have.add(f"{a} {b}")
            merges.append(f"{a} {b}")

    def token(text):
        """byte_level(text) as one token, built byte by byte from the left."""
        chars = byte_level(text)
        for k in range(2, len(chars) + 1):
            merge(chars[:k - 1], chars[k - 1])
        return chars

    digits = "0123456789"
    for x in digits:
        merge(byte_level(" "), x)
        for y in digits:
            merge(x, y)
    for x in digits:
        for y in digits:
            for z in digits:
                merge(x + y, z)
    for suffix in ["s", "t", "m", "d", "re", "ve", "ll", "ſ", "ſt"]:
        variants = {""}
        for ch in suffix:
            variants = {v + c for v in variants for c in {ch, ch.upper()}}
        for v in sorted(variants):
            prefix = "'"
            for ch in v:
                merge(token(prefix), token(ch))
                prefix += ch
    for a, b in [(" ", "\n"), ("\n", " "), ("\t", "\n"), ("\r", "\n"), ("\n", "\n"), (" ", "\t"), ("\t", " "),
                 (".", "\n"), ("!", "\r"), (" ", "'"), ("\u00a0", "a"), ("\u3000", " ")]:
        merge(token(a), token(b))
    return {"tokens": tokens, "types": types, "merges": merges}


def byte_level_reference(vocab, pre, with_specials=True):
    """HF tokenizer over a GGUF's byte-level vocabulary with the official pre-tokenizer of `pre`."""
    tokens, types = vocab["tokens"], vocab["types"]
    merges = [tuple(m.split(" ", 1)) for m in vocab["merges"]]
    ids = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=ids, merges=merges, ignore_merges=(pre == "llama-bpe")))
    if pre == "smollm":  # the official SmolLM2 tokenizer.json
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    elif pre == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:  # Meta-Llama-3 / Qwen2 tokenizer.json
        regex = LLAMA3_REGEX if pre == "llama-bpe" else QWEN2_REGEX
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        if pre == "qwen2":
            tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    if with_specials:
        tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                                for i, t in enumerate(types) if t == CONTROL])
    return tok


def write_gguf_tokenizer(path, *, model, tokens, types, pre=None, merges=None, scores=None, bos=None, eos=None,
                         unk=None, add_bos=False, add_space_prefix=False, chat_template=None, arch="llama"):
    """A GGUF file holding only tokenizer metadata (what our GGUF loader reads)."""
    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_tokenizer_model(model)
    if pre is not None:
        w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    if scores is not None:
        w.add_token_scores(scores)
    if merges is not None:
        w.add_token_merges(merges)
    for value, add in ((bos, w.add_bos_token_id), (eos, w.add_eos_token_id)):
        if value is not None:
            add(value)
    if unk is not None:
        w.add_unk_token_id(unk)
    w.add_add_bos_token(add_bos)
    w.add_add_space_prefix(add_space_prefix)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def first_mismatch(texts, ours, refs):
    for text, a, b in zip(texts, ours, refs):
        if a != b:
            k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            return f"text={text[:200]!r}\n ours[{k}:]={a[k:k + 12]}\n   hf[{k}:]={b[k:k + 12]}"
    return None


SPM_SPECIALS = ["<unk>", "<s>", "</s>"]
SPM_USER_DEFINED = "<|user_defined|>"


def train_sentencepiece_like(lines, vocab_size=4000):
    """A Llama-2-style BPE (byte fallback, Prepend/Replace "▁" normalizer) trained with HF on
    `lines`, rebuilt with the layout of a SentencePiece vocabulary: specials, 256 byte tokens,
    then the learned pieces. Returns (hf_tokenizer, tokens, types, scores, merges)."""
    from tokenizers import trainers
    spm_normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    base = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    base.normalizer = spm_normalizer
    # limit_alphabet leaves rare characters out, so byte fallback is exercised.
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPM_SPECIALS, limit_alphabet=400,
                                  show_progress=False)
    # Control tokens are never pieces in SentencePiece: keep their strings out of the training text
    # so no merge builds them (HF's trainer would otherwise map such a merge onto the control id).
    for special in SPM_SPECIALS:
        lines = [line.replace(special, "") for line in lines]
    base.train_from_iterator(lines, trainer)
    trained = json.loads(base.to_str())["model"]
    learned = sorted(((i, t) for t, i in trained["vocab"].items() if t not in SPM_SPECIALS))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in trained["merges"]]
    tokens = SPM_SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + [t for _, t in learned] + [SPM_USER_DEFINED]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256 + [NORMAL] * len(learned) + [USER_DEFINED]
    # SentencePiece merges the best-scoring piece first: score = -rank reproduces the merge order.
    scores = [0.0] * len(tokens)
    index = {t: i for i, t in enumerate(tokens)}
    for rank, (a, b) in enumerate(merges):
        scores[index[a + b]] = -float(rank)
    hf = Tokenizer(models.BPE(vocab=index, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    hf.normalizer = spm_normalizer
    hf.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    hf.add_tokens([AddedToken(SPM_USER_DEFINED, special=False, normalized=False)])
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPM_SPECIALS])
    return hf, tokens, types, scores, merges
