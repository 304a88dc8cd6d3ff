#!/usr/bin/env python3
"""export.py: write the files run.c reads.

    /usr/bin/python3 export.py [OUT] --tokenizer tokenizer.model
        SentencePiece model -> llama2.c's tokenizer.bin (OUT, default tokenizer.bin)

The tokenizer.model file is a serialized protocol buffer (SentencePiece's
ModelProto). It is read here directly, with a few lines of wire-format
decoding, so no sentencepiece package is needed.

tokenizer.bin layout (little-endian), as llama2.c defines it:
    uint32 max_token_length
    per token: float32 score, uint32 length, `length` bytes of UTF-8 text
with SentencePiece's space symbol U+2581 written as ' ', <s> as "\\n<s>\\n",
</s> as "\\n</s>\\n", and every other piece (<0xNN> byte pieces included) as is.
"""

import argparse
import os
import struct
import sys


def fail(message):
    """One line on stderr naming what was wrong, and a non-zero exit."""
    print(f"export.py: {message}", file=sys.stderr)
    sys.exit(1)


# -----------------------------------------------------------------------------
# Protocol buffer wire format: just enough to read a SentencePiece model.
# A message is a sequence of (key, value); key = field_number << 3 | wire_type.

def read_varint(buf, pos):
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("varint runs past the end")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 64 bits")


def read_fields(buf):
    """Yields (field_number, wire_type, value) for each field of a message.
    value is an int for varints, bytes for length-delimited and fixed fields."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError("field runs past the end")
        yield field, wire, value


# SentencePiece piece types (sentencepiece_model.proto).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


def load_sentencepiece(path):
    """Returns (pieces, bos_id, eos_id, unk_id); pieces is a list of
    (text, score, type). Field numbers are those of sentencepiece_model.proto:
    ModelProto.pieces = 1, ModelProto.trainer_spec = 2;
    SentencePiece.piece = 1, .score = 2, .type = 3;
    TrainerSpec.unk_id = 40, .bos_id = 41, .eos_id = 42."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        fail(f"cannot read tokenizer model {path}: {e.strerror}")
    pieces = []
    ids = {40: 0, 41: 1, 42: 2}  # SentencePiece's defaults
    try:
        for field, wire, value in read_fields(buf):
            if field == 1 and wire == 2:
                text, score, kind = None, 0.0, NORMAL
                for f2, w2, v2 in read_fields(value):
                    if f2 == 1 and w2 == 2:
                        text = v2.decode("utf-8")
                    elif f2 == 2 and w2 == 5:
                        score = struct.unpack("<f", v2)[0]
                    elif f2 == 3 and w2 == 0:
                        kind = v2
                if text is None:
                    raise ValueError(f"piece {len(pieces)} has no text")
                pieces.append((text, score, kind))
            elif field == 2 and wire == 2:
                for f2, w2, v2 in read_fields(value):
                    if f2 in ids and w2 == 0:
                        ids[f2] = v2 - (1 << 64) if v2 >= 1 << 63 else v2  # int32 -1 arrives as 2^64-1
    except (ValueError, UnicodeDecodeError) as e:
        fail(f"{path} is not a SentencePiece model: {e}")
    if len(pieces) < 3:
        fail(f"{path} holds {len(pieces)} pieces; not a SentencePiece model")
    return pieces, ids[41], ids[42], ids[40]


# -----------------------------------------------------------------------------
# tokenizer.bin

def tokenizer_bin_bytes(pieces, bos_id, eos_id):
    """The tokenizer.bin file for these pieces, as bytes."""
    encoded = []
    for i, (text, score, kind) in enumerate(pieces):
        if i == bos_id:
            text = "\n<s>\n"
        elif i == eos_id:
            text = "\n</s>\n"
        encoded.append((text.replace("\u2581", " ").encode("utf-8"), score))
    out = [struct.pack("<I", max(len(b) for b, _ in encoded))]
    for b, score in encoded:
        out.append(struct.pack("<fI", score, len(b)))
        out.append(b)
    return b"".join(out)


def write_atomically(path, data):
    """Writes to a temporary file, then renames it: an interrupted export never
    leaves a partial file under the real name."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        fail(f"cannot write {path}: {e.strerror}")


def export_tokenizer(model_path, out_path):
    pieces, bos_id, eos_id, _ = load_sentencepiece(model_path)
    write_atomically(out_path, tokenizer_bin_bytes(pieces, bos_id, eos_id))
    print(f"wrote {out_path}: {len(pieces)} tokens", file=sys.stderr)


# -----------------------------------------------------------------------------
# Command line

def main():
    parser = argparse.ArgumentParser(description="Write files for run.c.")
    parser.add_argument("out", nargs="?", help="output file (default: tokenizer.bin for --tokenizer)")
    parser.add_argument("--tokenizer", metavar="MODEL", help="SentencePiece tokenizer.model to convert to tokenizer.bin")
    args = parser.parse_args()
    if args.tokenizer:
        export_tokenizer(args.tokenizer, args.out or "tokenizer.bin")
    else:
        parser.error("nothing to export: give --tokenizer MODEL")


if __name__ == "__main__":
    main()
