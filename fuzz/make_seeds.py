#!/usr/bin/python3
"""Writes seed corpora for the fuzz/ harnesses into OUT (not kept in git):
tiny checkpoints in every layout run.c reads, the real small models and
tokenizers from MODELS, and the tokenizer test texts.

    /usr/bin/python3 fuzz/make_seeds.py MODELS OUT
"""
import os
import struct
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def tiny_weights(rng, dim=32, hidden=64, layers=1, heads=4, kv_heads=2, vocab=512):
    head = dim // heads
    kv = kv_heads * head
    m = lambda r, c: rng.normal(0, 0.1, (r, c)).astype(np.float32)
    return dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab, head=head,
                emb=m(vocab, dim), att=np.ones((layers, dim), np.float32), wq=[m(dim, dim)], wk=[m(kv, dim)],
                wv=[m(kv, dim)], wo=[m(dim, dim)], ffn=np.ones((layers, dim), np.float32), w1=[m(hidden, dim)],
                w2=[m(dim, hidden)], w3=[m(hidden, dim)], final=np.ones(dim, np.float32))


def write_legacy(path, w, seq=16):
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", w["dim"], w["hidden"], w["layers"], w["heads"], w["kv_heads"], w["vocab"], seq))
        for part in [w["emb"], w["att"], *w["wq"], *w["wk"], *w["wv"], *w["wo"], w["ffn"], *w["w1"], *w["w2"],
                     *w["w3"], w["final"], np.zeros(seq * w["head"], np.float32)]:
            f.write(np.ascontiguousarray(part, np.float32).tobytes())


def header(version, w, seq, extra=b""):
    h = struct.pack("<Ii7iB", 0x616B3432, version, w["dim"], w["hidden"], w["layers"], w["heads"], w["kv_heads"],
                    w["vocab"], seq, 1) + extra
    return h + b"\0" * (256 - len(h))


def write_v1(path, w, seq=16):
    with open(path, "wb") as f:
        f.write(header(1, w, seq))
        for part in [w["att"], w["ffn"], w["final"], w["emb"], *w["wq"], *w["wk"], *w["wv"], *w["wo"], *w["w1"],
                     *w["w2"], *w["w3"]]:
            f.write(np.ascontiguousarray(part, np.float32).tobytes())


def write_v2(path, w, seq=16, gs=32):
    with open(path, "wb") as f:
        f.write(header(2, w, seq, struct.pack("<i", gs)))
        for part in [w["att"], w["ffn"], w["final"]]:
            f.write(part.tobytes())
        for m in [w["emb"], *w["wq"], *w["wk"], *w["wv"], *w["wo"], *w["w1"], *w["w2"], *w["w3"]]:
            g = m.reshape(-1, gs)
            scale = np.abs(g).max(axis=1) / 127
            q = np.rint(g / np.where(scale == 0, 1, scale)[:, None]).astype(np.int8)
            f.write(q.tobytes())
            f.write(scale.astype(np.float32).tobytes())


def small_bpe_vocab():
    """A vocabulary-only GGUF of byte-level BPE: the 256 byte tokens (GPT-2's stand-ins), two
    merges, Llama 3's pre-tokenizer, <|eot_id|>."""
    def printable(b):
        return 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or b >= 0xAE
    stand_in, k = {}, 0x100
    for b in range(256):
        stand_in[b] = chr(b) if printable(b) else chr(k)
        k += not printable(b)
    tokens = [stand_in[b] for b in range(256)] + ["\u0120t", "he", "<|eot_id|>"]
    types = [1] * 258 + [3]
    merges = ["\u0120 t", "h e"]

    def s(text):
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw

    def kv_str(key, value):
        return s(key) + struct.pack("<I", 8) + s(value)

    def kv_arr(key, etype, items):
        body = b"".join(s(x) for x in items) if etype == 8 else b"".join(struct.pack("<i", x) for x in items)
        return s(key) + struct.pack("<IIQ", 9, etype, len(items)) + body

    kvs = [kv_str("general.architecture", "llama"), kv_str("tokenizer.ggml.model", "gpt2"),
           kv_str("tokenizer.ggml.pre", "llama-bpe"), kv_arr("tokenizer.ggml.tokens", 8, tokens),
           kv_arr("tokenizer.ggml.token_type", 5, types), kv_arr("tokenizer.ggml.merges", 8, merges)]
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)


def main():
    models, out = sys.argv[1], sys.argv[2]
    for d in ("checkpoint", "gguf", "tokenizer"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    rng = np.random.default_rng(7)
    w = tiny_weights(rng)
    ck = os.path.join(out, "checkpoint")
    write_legacy(os.path.join(ck, "tiny.bin"), w)
    write_v1(os.path.join(ck, "tiny_v1.bin"), w)
    write_v2(os.path.join(ck, "tiny_v2.bin"), w)
    for t in ("f32", "f16", "q8_0", "q4_0"):
        gguf = os.path.join(out, "gguf", f"tiny_{t}.gguf")
        subprocess.run([sys.executable, os.path.join(HERE, "..", "export.py"), gguf, "--llama2c",
                        os.path.join(ck, "tiny.bin"), "--tokenizer", os.path.join(models, "tok512.model"),
                        "--type", t], check=True, stderr=subprocess.DEVNULL)
        with open(gguf, "rb") as f, open(os.path.join(ck, f"tiny_{t}.gguf"), "wb") as g:
            g.write(f.read())
    for real in ("stories260K_q80_gs4.bin", "stories260K.gguf"):
        data = open(os.path.join(models, real), "rb").read()
        open(os.path.join(ck, real), "wb").write(data)
    # Tokenizer inputs: byte 0 then a tokenizer file, or text.
    tk = os.path.join(out, "tokenizer")
    open(os.path.join(tk, "tok512"), "wb").write(b"\0" + open(os.path.join(models, "tok512.bin"), "rb").read())
    cases = os.path.join(HERE, "..", "tests", "tokenizer_cases.tsv")
    for i, line in enumerate(open(cases)):
        if line.startswith("#"):
            continue
        text = bytes.fromhex(line.split("\t")[1])
        if text and text[0] != 0:
            open(os.path.join(tk, f"case{i}"), "wb").write(text[:4096])
    # Llama 3's tokenizer: byte 1 then text; byte 2 then a small byte-level BPE vocabulary GGUF.
    cases = os.path.join(HERE, "..", "tests", "tokenizer_cases_llama3.tsv")
    for i, line in enumerate(open(cases)):
        if not line.startswith("#"):
            open(os.path.join(tk, f"bpe{i}"), "wb").write(b"\1" + bytes.fromhex(line.split("\t")[1])[:4096])
    open(os.path.join(tk, "bpe-vocab"), "wb").write(b"\2" + small_bpe_vocab())
    print(f"seeds in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
