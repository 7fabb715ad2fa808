"""A SentencePiece reference tokenizer rebuilt from a GGUF file's vocabulary (independent of our code).

The `sentencepiece` package (Google's C++ library) loads a ModelProto assembled from the GGUF's
tokenizer.ggml.tokens / scores / token_type: a BPE model with byte fallback. What the GGUF does not
store is set the way SentencePiece models of the "llama" kind are (Llama 2, Gemma):
- normalizer "identity" (no NFKC rules: the GGUF carries no precompiled charsmap, and llama.cpp-style
  loaders apply none), whitespace escaped to U+2581, extra whitespace kept, and a dummy "▁" prefix
  only when tokenizer.ggml.add_space_prefix says so;
- user-defined pieces get their spaces back as "▁": llama.cpp's converter writes them with plain
  spaces ("pre-normalize user-defined spaces") so that they match raw text, while SentencePiece
  matches user-defined pieces after escaping whitespace;
- the unknown-token id gets type UNKNOWN (the converter may mark it CONTROL; SentencePiece needs
  exactly one UNKNOWN piece), decoded to nothing like the control piece the GGUF says it is
  (SentencePiece's default surface is " ⁇ ").
SentencePiece never matches control tokens in text; a caller that wants them parsed (as HF tokenizers
and llama.cpp do with special tokens) splits the text on them first: `encode(parse_special=True)`.
"""

import re

import gguf
from sentencepiece import SentencePieceProcessor
from sentencepiece import sentencepiece_model_pb2 as spm_pb2

SPACE_MARK = "\u2581"
# GGUF token types (llama.cpp's numbering is SentencePiece's)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def read_spm_vocab(path, reader=None):
    """The GGUF's SentencePiece vocabulary and flags, read with the `gguf` package."""
    r = reader or gguf.GGUFReader(str(path))

    def field(key):
        return r.fields[key] if key in r.fields else None

    def scalar(key, default):
        f = field(key)
        return default if f is None else f.contents()

    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    scores = field("tokenizer.ggml.scores")
    return {
        "model": scalar("tokenizer.ggml.model", ""),
        "tokens": [bytes(tokens.parts[i]).decode("utf-8") for i in tokens.data],
        "types": [int(types.parts[i][0]) for i in types.data],
        "scores": [float(scores.parts[i][0]) for i in scores.data],
        "bos": scalar("tokenizer.ggml.bos_token_id", -1),
        "eos": scalar("tokenizer.ggml.eos_token_id", -1),
        "unk": scalar("tokenizer.ggml.unknown_token_id", -1),
        "pad": scalar("tokenizer.ggml.padding_token_id", -1),
        "add_bos": bool(scalar("tokenizer.ggml.add_bos_token", True)),
        "add_space_prefix": bool(scalar("tokenizer.ggml.add_space_prefix", True)),
    }


def model_proto(vocab):
    """The serialized SentencePiece ModelProto for `vocab` (see the module docstring)."""
    proto = spm_pb2.ModelProto()
    for i, (text, kind, score) in enumerate(zip(vocab["tokens"], vocab["types"], vocab["scores"])):
        piece = proto.pieces.add()
        if i == vocab["unk"]:
            kind = UNKNOWN
        elif kind == USER_DEFINED:
            text = text.replace(" ", SPACE_MARK)
        piece.piece, piece.score, piece.type = text, score, kind
    t = proto.trainer_spec
    t.model_type = spm_pb2.TrainerSpec.BPE
    t.vocab_size = len(vocab["tokens"])
    t.byte_fallback = True
    t.unk_id, t.bos_id, t.eos_id, t.pad_id = vocab["unk"], vocab["bos"], vocab["eos"], vocab["pad"]
    if vocab["types"][vocab["unk"]] == CONTROL:
        t.unk_surface = ""
    n = proto.normalizer_spec
    n.name = "identity"
    n.add_dummy_prefix = vocab["add_space_prefix"]
    n.remove_extra_whitespaces = False
    n.escape_whitespaces = True
    return proto.SerializeToString()


class SentencePieceReference:
    def __init__(self, path, reader=None):
        self.vocab = read_spm_vocab(path, reader)
        assert self.vocab["model"] == "llama", f"{path} is not a SentencePiece ('llama') vocabulary"
        self.sp = SentencePieceProcessor()
        self.sp.LoadFromSerializedProto(model_proto(self.vocab))
        controls = sorted((t for t, k in zip(self.vocab["tokens"], self.vocab["types"]) if k == CONTROL and t),
                          key=len, reverse=True)
        # Longest first: at one position the regex takes the first alternative that matches.
        self._control_re = re.compile("|".join(re.escape(t) for t in controls))
        self._control_ids = {t: i for i, (t, k) in enumerate(zip(self.vocab["tokens"], self.vocab["types"]))
                             if k == CONTROL}

    def encode(self, text, parse_special=True, add_bos=False):
        ids = [self.vocab["bos"]] if add_bos and self.vocab["add_bos"] else []
        pos = 0
        if parse_special:
            for m in self._control_re.finditer(text):
                if m.start() > pos:
                    ids += self.sp.EncodeAsIds(text[pos:m.start()])
                ids.append(self._control_ids[m.group()])
                pos = m.end()
        if pos < len(text):
            ids += self.sp.EncodeAsIds(text[pos:])
        return ids

    def encode_all(self, texts, parse_special=True):
        return [self.encode(t, parse_special) for t in texts]
