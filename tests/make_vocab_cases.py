#!/usr/bin/python3
"""Writes two variants of stories260K's tok512.model and SentencePiece's own ids for
them, for vocabularies the other cases do not cover:

    /usr/bin/python3 tests/make_vocab_cases.py [path/to/tok512.model]

  tests/tok512_userdef.model, tests/tokenizer_cases_userdef.tsv: pieces 510 and 511
      renamed <sep> and <cls> and made USER_DEFINED, which SentencePiece matches
      whole before BPE and never merges;
  tests/tok512_nobyte.model, tests/tokenizer_cases_nobyte.tsv: no byte fallback
      (the 256 <0xNN> pieces UNUSED, trainer_spec.byte_fallback off), so a run of
      unknown characters is one <unk>.
Both drop trainer_spec.unk_surface, so <unk> decodes as SentencePiece's default " ⁇ ".
The .model files are edited here at the protocol-buffer wire level (export.py's
reader, and a few lines of writing). The .tsv lines are as make_tokenizer_cases.py
writes them: name, input as hex, ids with <s> first, decoded text as hex.
"""

import os
import sys

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from export import read_fields  # noqa: E402
from make_tokenizer_cases import keep_printable  # noqa: E402

USER_DEFINED, UNUSED, BYTE = 4, 5, 6
PIECES, TRAINER_SPEC = 1, 2                               # ModelProto fields
PIECE_TEXT, PIECE_TYPE = 1, 3                             # SentencePiece fields
BYTE_FALLBACK, UNK_SURFACE = 35, 44                       # TrainerSpec fields

CASES = [
    ("userdef-between", "a<sep>b"),
    ("userdef-alone", "<sep>"),
    ("userdef-adjacent", "x<sep><cls>y"),
    ("userdef-in-sentence", "Once upon<sep> a time"),
    ("userdef-spaced", "a <sep> b <cls>"),
    ("userdef-partial", "<se"),
    ("userdef-nested-brackets", "<<sep>>"),
    ("unknown-mixed", "café 饕餮 🦙"),
    ("unknown-emoji", "Hi 🦙"),
    ("unknown-run", "饕餮饕"),
    ("unknown-separated", "z饕 餮"),
    ("unknown-control", "a\x01b"),
    ("unknown-at-end", "end 🦙🦙"),
]


def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def field(number, wire, value):
    key = varint(number << 3 | wire)
    if wire == 0:
        return key + varint(value)
    if wire == 2:
        return key + varint(len(value)) + value
    return key + value  # fixed 32 or 64 bits, as read


def rewrite(buf, edit):
    """The message with each field passed through edit(field, wire, value) -> bytes or None (dropped)."""
    return b"".join(out for out in (edit(f, w, v) for f, w, v in read_fields(buf)) if out is not None)


def variant(model, renamed, unused_types, byte_fallback):
    """renamed: {piece index: (new text, new type)}; pieces of a type in unused_types become UNUSED."""
    index = [0]

    def piece(f, w, v):
        if f == PIECES and w == 2:
            i = index[0]
            index[0] += 1
            kind = next((v2 for f2, w2, v2 in read_fields(v) if f2 == PIECE_TYPE), None)  # absent: NORMAL
            if i in renamed or kind in unused_types:
                text, new_kind = renamed.get(i, (None, UNUSED))
                body = rewrite(v, lambda f2, w2, v2: None if f2 == PIECE_TYPE else
                               field(1, 2, text.encode()) if f2 == PIECE_TEXT and text else field(f2, w2, v2))
                return field(PIECES, 2, body + field(PIECE_TYPE, 0, new_kind))
        if f == TRAINER_SPEC and w == 2:
            return field(f, w, rewrite(v, lambda f2, w2, v2: None if f2 == UNK_SURFACE else
                                       field(f2, w2, int(byte_fallback)) if f2 == BYTE_FALLBACK else field(f2, w2, v2)))
        return field(f, w, v)

    return rewrite(model, piece)


def main():
    source = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "models", "tok512.model")
    with open(source, "rb") as f:
        model = f.read()
    variants = {"userdef": variant(model, {510: ("<sep>", USER_DEFINED), 511: ("<cls>", USER_DEFINED)}, (), True),
                "nobyte": variant(model, {}, (BYTE,), False)}
    for name, proto in variants.items():
        with open(os.path.join(HERE, f"tok512_{name}.model"), "wb") as f:
            f.write(proto)
        sp = spm.SentencePieceProcessor(model_proto=proto)
        out_path = os.path.join(HERE, f"tokenizer_cases_{name}.tsv")
        with open(out_path, "w") as f:
            f.write("# made by tests/make_vocab_cases.py with SentencePiece %s on tests/tok512_%s.model\n"
                    % (spm.__version__, name))
            for case, text in CASES:
                data = text.encode()
                ids = [sp.bos_id()] + sp.encode(data)
                decoded = sp.decode(ids[1:]).encode("utf-8")
                f.write("%s\t%s\t%s\t%s\n" % (case, data.hex(), " ".join(map(str, ids)), keep_printable(decoded).hex()))
        print("wrote %s and tok512_%s.model: %d cases" % (out_path, name, len(CASES)), file=sys.stderr)


if __name__ == "__main__":
    main()
