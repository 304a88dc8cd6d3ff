#!/usr/bin/env python3
"""tests/test_export.py: checks export.py's GGUF output (and its tokenizer.bin output).

    /usr/bin/python3 tests/test_export.py [MODELS_DIR]     (default: the repository's models/ folder)

Prints `ok <id>`, `FAIL <id>: why` or `skip <id>: why` per check, `# ...` notes,
and ends with `N passed, N failed[, N skipped]`; the exit status is 1 if any
check failed. Checks needing PyTorch (Meta .pth, pytorch_model.bin) are skipped
when it is not installed.

The anchor is stories260K.gguf, made by llama.cpp's own converter: exports of
the same model from three other layouts must give bit-identical tensors and the
same vocabulary. Quantized exports are held to an independent, value-by-value
implementation of llama.cpp's reference quantizers written below, to error
bounds derived from those definitions, and to hand-computed blocks.
"""

import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from gguf_read import (ARRAY, BOOL, FLOAT32, INT32, STRING, UINT32, GGML_F16, GGML_F32, GGML_Q4_0,  # noqa: E402
                       GGML_Q8_0, GGUFFile)

PYTHON = sys.executable or "/usr/bin/python3"
EXPORT = os.path.join(ROOT, "export.py")
MODELS = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models"))
TMP = tempfile.mkdtemp(prefix="test_export.")

try:
    import torch
except ImportError:
    torch = None

counts = {"passed": 0, "failed": 0, "skipped": 0}


class Failure(Exception):
    pass


class Skip(Exception):
    pass


def expect(cond, why):
    if not cond:
        raise Failure(why)


def check(cid, fn, *args):
    try:
        fn(*args)
    except Skip as e:
        counts["skipped"] += 1
        print(f"skip {cid}: {e}")
    except Failure as e:
        counts["failed"] += 1
        print(f"FAIL {cid}: {e}")
    except Exception as e:  # a bug in the test or a crash: still one line
        counts["failed"] += 1
        print(f"FAIL {cid}: {type(e).__name__}: {' '.join(str(e).split())}")
    else:
        counts["passed"] += 1
        print(f"ok {cid}")
    sys.stdout.flush()


def note(text):
    print(f"# {text}")


def model(name):
    return os.path.join(MODELS, name)


def need_torch():
    if torch is None:
        raise Skip("PyTorch is not installed (apt-get install python3-torch)")


# -----------------------------------------------------------------------------
# Running export.py

_exports = {}


def run_export(args, out=None, cwd=None):
    """Runs export.py; returns (returncode, stdout, stderr)."""
    cmd = [PYTHON, EXPORT] + ([out] if out else []) + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def exported(key, *args):
    """Exports once per key into TMP; returns the GGUFFile (raises Failure if export.py failed)."""
    if key not in _exports:
        out = os.path.join(TMP, f"{key}.gguf")
        rc, _, err = run_export(list(args), out)
        _exports[key] = (rc, err, out)
    rc, err, out = _exports[key]
    expect(rc == 0, f"export.py exited {rc}: {err.strip()[-300:]}")
    return GGUFFile(out)


def anchor():
    return GGUFFile(model("stories260K.gguf"))


# -----------------------------------------------------------------------------
# An independent implementation of llama.cpp's reference quantizers, value by
# value (quantize_row_q8_0_ref / quantize_row_q4_0_ref in ggml-quants.c), with
# the same float32 arithmetic; d is stored as IEEE float16 (struct 'e' rounds
# to nearest even).

def f16_bytes(x):
    return struct.pack("<e", float(x))


def ref_q8_0_block(xs):
    xs = [np.float32(x) for x in xs]
    amax = np.float32(0)
    for x in xs:
        amax = max(amax, np.float32(abs(x)))
    d = np.float32(amax / np.float32(127))
    inv = np.float32(np.float32(1) / d) if d != 0 else np.float32(0)
    out = bytearray(f16_bytes(d))
    for x in xs:
        v = float(np.float32(x * inv))
        q = int(math.copysign(math.floor(abs(v) + 0.5), v))  # roundf: halves away from zero
        out += struct.pack("<b", q)
    return bytes(out)


def ref_q4_0_block(xs):
    xs = [np.float32(x) for x in xs]
    amax, m = np.float32(0), np.float32(0)
    for x in xs:  # the first value of largest magnitude, with its sign
        if amax < abs(x):
            amax, m = np.float32(abs(x)), x
    d = np.float32(m / np.float32(-8))
    inv = np.float32(np.float32(1) / d) if d != 0 else np.float32(0)
    q = [min(15, int(np.float32(np.float32(x * inv) + np.float32(8.5)))) for x in xs]  # int(): toward zero
    return f16_bytes(d) + bytes(q[j] | (q[j + 16] << 4) for j in range(16))


def ref_quantize(values, ggml_type):
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    fn = ref_q8_0_block if ggml_type == GGML_Q8_0 else ref_q4_0_block
    return b"".join(fn(flat[i:i + 32]) for i in range(0, len(flat), 32))


# -----------------------------------------------------------------------------
# 1. The GGUF reader on llama.cpp's files

def t_reader_stories():
    g = anchor()
    expect(g.version == 3, f"version {g.version}")
    expect(len(g.tensors) == 48, f"{len(g.tensors)} tensors, expected 48 (5 layers x 9 + 3)")
    for key in ("general.architecture", "llama.embedding_length", "llama.block_count", "tokenizer.ggml.tokens"):
        expect(key in g.kv, f"no {key}")
    expect(g.kv["general.architecture"] == "llama", "architecture")
    expect(g.kv["llama.embedding_length"] == 64 and g.kv["llama.feed_forward_length"] == 172, "dims")
    expect(g.tensors["token_embd.weight"].ne == [64, 512], f"token_embd ne {g.tensors['token_embd.weight'].ne}")
    expect(g.tensors["blk.0.ffn_down.weight"].ne == [172, 64], "ffn_down ne")
    expect(g.tensors["blk.0.attn_k.weight"].ne == [64, 32], "attn_k ne (4 kv heads x 8)")
    expect(all(t.type == GGML_F32 for t in g.tensors.values()), "not all F32")
    expect(len(g.kv["tokenizer.ggml.tokens"]) == 512, "vocab")
    # Its values are stories260K.bin's (SOURCES.md rebuilt the .bin from them): spot-check one.
    with open(model("stories260K.bin"), "rb") as f:
        f.seek(28)
        emb = np.frombuffer(f.read(512 * 64 * 4), dtype="<f4").reshape(512, 64)
    expect(np.array_equal(g.array("token_embd.weight"), emb), "token_embd differs from stories260K.bin's")


def t_reader_tiny():
    g = GGUFFile(model("llama-2-tiny-random.gguf"))
    expect(len(g.tensors) == 12, f"{len(g.tensors)} tensors")
    expect(g.tensors["token_embd.weight"].ne == [8, 32000] and g.tensors["token_embd.weight"].type == GGML_F16,
           "token_embd")
    expect("output.weight" in g.tensors, "no output.weight")
    expect(g.tensors["blk.0.attn_norm.weight"].type == GGML_F32, "norm type")
    expect(g.kv["general.file_type"] == 1, "file_type")
    expect(len(g.kv["tokenizer.ggml.tokens"]) == 32000, "vocab")


# -----------------------------------------------------------------------------
# 2. f32 exports of stories260K from each layout against llama.cpp's file

SOURCES = {
    "hf": lambda: ["--hf", model("stories260K-hf")],
    "meta": lambda: ["--meta-llama", model("stories260K-meta")],
    "llama2c": lambda: ["--llama2c", model("stories260K.bin"), "--tokenizer", model("tok512.model")],
}


def export_stories(src, out_type="f32"):
    if src == "meta":
        need_torch()
    return exported(f"stories260K-{src}-{out_type}", *SOURCES[src](), "--type", out_type)


def t_f32_tensors(src):
    g, a = export_stories(src), anchor()
    names = set(g.tensors)
    expect(names == set(a.tensors) - {"output.weight"},
           f"tensor names differ: extra {sorted(names - set(a.tensors))}, missing {sorted(set(a.tensors) - names)}")
    # llama.cpp's file stores the tied classifier as a copy of the embedding; ours leaves it out.
    expect(np.array_equal(a.array("output.weight"), a.array("token_embd.weight")), "anchor output != token_embd")
    for name in sorted(names):
        t, u = g.tensors[name], a.tensors[name]
        expect(t.ne == u.ne, f"{name}: ne {t.ne} vs llama.cpp's {u.ne}")
        expect(t.type == GGML_F32, f"{name}: type {t.type_name}")
        expect(g.raw(name) == a.raw(name), f"{name}: values differ from llama.cpp's "
                                          f"(max |diff| {np.abs(g.array(name) - a.array(name)).max()})")


def t_f32_tokenizer(src):
    g, a = export_stories(src), anchor()
    expect(g.kv["tokenizer.ggml.tokens"] == a.kv["tokenizer.ggml.tokens"], "tokens differ")
    expect(any("\u2581" in t for t in g.kv["tokenizer.ggml.tokens"]), "no U+2581 in the pieces")
    expect(np.array_equal(g.kv["tokenizer.ggml.scores"], a.kv["tokenizer.ggml.scores"]), "scores differ")
    expect(np.array_equal(g.kv["tokenizer.ggml.token_type"], a.kv["tokenizer.ggml.token_type"]), "token types differ")
    expect(g.types["tokenizer.ggml.scores"] == (ARRAY, FLOAT32), "scores not float32")
    expect(g.types["tokenizer.ggml.token_type"] == (ARRAY, INT32), "token_type not int32")
    expect(g.types["tokenizer.ggml.tokens"] == (ARRAY, STRING), "tokens not strings")


EXPECTED_TYPES = {
    "general.architecture": STRING, "general.name": STRING, "general.alignment": UINT32,
    "general.file_type": UINT32, "llama.context_length": UINT32, "llama.embedding_length": UINT32,
    "llama.block_count": UINT32, "llama.feed_forward_length": UINT32, "llama.rope.dimension_count": UINT32,
    "llama.attention.head_count": UINT32, "llama.attention.head_count_kv": UINT32,
    "llama.attention.layer_norm_rms_epsilon": FLOAT32, "llama.rope.freq_base": FLOAT32,
    "tokenizer.ggml.model": STRING, "tokenizer.ggml.bos_token_id": UINT32, "tokenizer.ggml.eos_token_id": UINT32,
    "tokenizer.ggml.unknown_token_id": UINT32, "tokenizer.ggml.add_bos_token": BOOL,
    "tokenizer.ggml.add_eos_token": BOOL,
}


def check_metadata_types(g):
    for key, vtype in EXPECTED_TYPES.items():
        expect(key in g.kv, f"no {key}")
        expect(g.types[key] == vtype, f"{key} has type {g.types[key]}, expected {vtype}")
    expect(g.kv["general.architecture"] == "llama" and g.kv["tokenizer.ggml.model"] == "llama", "architecture")
    expect(g.kv["general.alignment"] == 32, "alignment")
    expect(g.kv["tokenizer.ggml.add_bos_token"] is True and g.kv["tokenizer.ggml.add_eos_token"] is False, "add_*")


def check_layout(g):
    """Offsets aligned, tensors inside the file and not overlapping, nothing after the last one but padding."""
    expect(g.data_start % g.alignment == 0 and g.data_start - g.header_end < g.alignment, "data section start")
    spans = sorted((t.offset, t.offset + t.nbytes(), t.name) for t in g.tensors.values())
    for (s0, e0, n0), (s1, _, n1) in zip(spans, spans[1:]):
        expect(e0 <= s1, f"{n0} overlaps {n1}")
    end = g.data_start + spans[-1][1]
    expect(len(g.buf) - end < g.alignment, f"file has {len(g.buf) - end} bytes after the last tensor")


def t_f32_metadata(src):
    g, a = export_stories(src), anchor()
    check_metadata_types(g)
    check_layout(g)
    expect(g.kv["general.file_type"] == 0, "file_type")
    expect(g.kv["llama.rope.freq_base"] == 10000.0, "freq_base")
    same = ["llama.embedding_length", "llama.block_count", "llama.feed_forward_length", "llama.rope.dimension_count",
            "llama.attention.head_count", "llama.attention.head_count_kv", "llama.attention.layer_norm_rms_epsilon",
            "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id"]
    for key in same:
        expect(g.kv[key] == a.kv[key] and g.types[key] == a.types[key], f"{key}: {g.kv[key]} vs {a.kv[key]}")
    differ = [f"{k} {g.kv[k]!r} (llama.cpp {a.kv[k]!r})" for k in g.kv
              if k in a.kv and not isinstance(g.kv[k], (list, np.ndarray)) and g.kv[k] != a.kv[k]]
    note(f"{src} vs llama.cpp's stories260K.gguf: differing: {'; '.join(differ) or 'none'}")
    note(f"{src}: only in ours: {', '.join(k for k in g.kv if k not in a.kv) or 'none'}; "
         f"only in llama.cpp's: {', '.join(k for k in a.kv if k not in g.kv) or 'none'}")


def t_no_temp_left():
    left = [f for f in os.listdir(TMP) if ".tmp" in f]
    expect(not left, f"temporary files left: {left}")


# -----------------------------------------------------------------------------
# 3/4. f16, q8_0, q4_0

def t_f16():
    g, a = export_stories("hf", "f16"), anchor()
    expect(g.kv["general.file_type"] == 1, "file_type")
    for name, t in g.tensors.items():
        ref = a.array(name)
        if len(t.ne) == 1:
            expect(t.type == GGML_F32 and g.raw(name) == a.raw(name), f"{name}: norm not the same F32")
        else:
            expect(t.type == GGML_F16, f"{name}: {t.type_name}")
            expect(g.raw(name) == ref.astype("<f2").tobytes(), f"{name}: not float16(f32 values)")


def quant_error_bound(x, d16, ggml_type):
    """Per value bound on |x - dequantized|, from the definitions (x: blocks of 32
    float32 values as float64, d16: the stored scales). With d computed in float32:
    Q8_0: q = round(x/d) so |x - q d| <= d/2; storing d as float16 adds |q| |d - d16|
          <= 127 |d - d16|.
    Q4_0: q - 8 = trunc(x/d + 8.5) - 8 = round-half-up(x/d), so |x - (q-8) d| <= |d|/2,
          except where x/d > 7.5 (only values of the sign opposite to the extreme,
          up to +8): clamped to 7, off by up to |d|. Float16 d adds 8 |d - d16|."""
    if ggml_type == GGML_Q8_0:
        d = np.abs(x).max(axis=1, keepdims=True) / 127
        return d / 2 + 127 * np.abs(d - d16)
    first = np.argmax(np.abs(x), axis=1)
    d = (x[np.arange(len(x)), first] / -8)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(d != 0, x / d, 0)
    return np.abs(d) * np.where(r > 7.5, 1.0, 0.5) + 8 * np.abs(d - d16)


def t_quantized(out_type):
    gtype = GGML_Q8_0 if out_type == "q8_0" else GGML_Q4_0
    g, a = export_stories("hf", out_type), anchor()
    expect(g.kv["general.file_type"] == (7 if out_type == "q8_0" else 2), f"file_type {g.kv['general.file_type']}")
    expect(g.kv.get("general.quantization_version") == 2, "quantization_version")
    check_layout(g)
    block_bytes = 34 if gtype == GGML_Q8_0 else 18
    worst = 0.0
    for name, t in g.tensors.items():
        ref = a.array(name)
        if len(t.ne) == 1:
            expect(t.type == GGML_F32 and g.raw(name) == a.raw(name), f"{name}: norm not F32")
            continue
        if t.ne[0] % 32:
            continue  # t_non_multiple checks these
        expect(t.type == gtype, f"{name}: {t.type_name}, expected {out_type}")
        x = ref.reshape(-1, 32).astype(np.float64)
        raw = np.frombuffer(g.raw(name), dtype=np.uint8).reshape(-1, block_bytes)
        d16 = raw[:, :2].copy().view("<f2").astype(np.float64)
        err = np.abs(x - g.array(name).reshape(-1, 32))
        bound = quant_error_bound(x, d16, gtype)
        bad = err > bound * (1 + 1e-6) + 1e-12
        expect(not bad.any(), f"{name}: {bad.sum()} values beyond the error bound")
        worst = max(worst, float((err / np.maximum(np.abs(d16), 1e-30)).max()))
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.2.attn_k.weight", "blk.4.ffn_gate.weight"):
        expect(g.raw(name) == ref_quantize(a.array(name), gtype), f"{name}: bytes differ from the reference quantizer")
    note(f"{out_type}: largest error {worst:.3f} x |d| (stored scale)")


def t_non_multiple(out_type):
    g, a = export_stories("hf", out_type), anchor()
    for i in range(5):
        name = f"blk.{i}.ffn_down.weight"  # rows of hidden_dim 172 values
        t = g.tensors[name]
        expect(t.ne == [172, 64], f"{name} ne {t.ne}")
        expect(t.type == GGML_F16, f"{name} is {t.type_name}, expected F16")
        expect(g.raw(name) == a.array(name).astype("<f2").tobytes(), f"{name}: not float16 of the values")


# -----------------------------------------------------------------------------
# A synthetic model, written by this test in every input layout: dim 64,
# hidden 96, 2 layers, 4 heads, 2 kv heads (head size 16), vocab 520 (tok512's
# 512 pieces + 8 padding rows), untied classifier. Rows 0-3 of the embedding are
# hand-made blocks for the quantizers.

SYN = dict(dim=64, hidden=96, layers=2, heads=4, kv_heads=2, vocab=520, hs=16)

# Q8_0 hand blocks (embedding rows 0 and 1, two blocks each).
Q8_BLOCKS = [
    # max|x| = 127 -> d = 1 (f16 0x3C00); q = roundf(x): halves away from zero
    ([127, -127, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49, -0.51, 100.5, 3] + [0] * 20,
     "003c" + "7f81 01ff 02fe 03fd 00ff 6503".replace(" ", "") + "00" * 20),
    # max|x| = 63.5 -> d = 0.5 (0x3800), q = roundf(2x)
    ([63.5, -1.25, 0.25, 0.2, -0.25, 10] + [0] * 26, "0038" + "7f fd 01 00 ff 14".replace(" ", "") + "00" * 26),
    # all zero -> d = 0, q = 0
    ([0] * 32, "0000" + "00" * 32),
    # max|x| = 31.75 -> d = 0.25 (0x3400), q = roundf(4x); -0.125 -> -0.5 -> -1
    ([-31.75, 0.125, -0.125, 10] + [0] * 28, "0034" + "81 01 ff 28".replace(" ", "") + "00" * 28),
]


def q4_bytes(d_hex, q):
    return d_hex + "".join(f"{q[j] | (q[j + 16] << 4):02x}" for j in range(16))


# Q4_0 hand blocks (embedding rows 2 and 3). q = min(15, trunc(x/d + 8.5)); byte j = q[j] | q[j+16] << 4.
Q4_BLOCKS = [
    # first largest magnitude -8 (the later +8 does not count): d = -8/-8 = 1 (0x3C00)
    # x:  -8  7  7.6  0  0.5 -0.5 1.49 -3.2 8 | x[16] = -7, x[17] = 6.9
    # q:   0 15  15   8   9    8    9    5 15 |  q[16] = 1,  q[17] = 15
    ([-8, 7, 7.6, 0, 0.5, -0.5, 1.49, -3.2, 8] + [0] * 7 + [-7, 6.9] + [0] * 14,
     q4_bytes("003c", [0, 15, 15, 8, 9, 8, 9, 5, 15] + [8] * 7 + [1, 15] + [8] * 14)),
    # first largest magnitude +8: d = 8/-8 = -1 (0xBC00), q = trunc(8.5 - x); x = -8 -> 16 -> 15
    ([8, -8, 4, -4, 1, -1, 0.25, -0.25] + [0] * 8 + [2] + [0] * 15,
     q4_bytes("00bc", [0, 15, 4, 12, 7, 9, 8, 8] + [8] * 8 + [6] + [8] * 15)),
    # all zero: d = 0/-8 = -0 (0x8000), q = 8
    ([0] * 32, q4_bytes("0080", [8] * 32)),
    # max 2: d = -0.25 (0xB400), q = trunc(8.5 - 4x)
    ([2, -1, 0.1] + [0] * 29, q4_bytes("00b4", [0, 12, 8] + [8] * 29)),
]


def syn_weights():
    """GGUF name -> float32 array in Meta/GGUF row order (interleaved RoPE pairs)."""
    rng = np.random.default_rng(1234)
    dim, hidden, q, kv, vocab = SYN["dim"], SYN["hidden"], SYN["heads"] * SYN["hs"], SYN["kv_heads"] * SYN["hs"], \
        SYN["vocab"]

    def r(*shape):
        return (rng.standard_normal(shape) * 0.5).astype(np.float32)

    w = {"token_embd.weight": r(vocab, dim)}
    blocks = [np.array(v, dtype=np.float32) for v, _ in Q8_BLOCKS + Q4_BLOCKS]
    w["token_embd.weight"][:4] = np.concatenate(blocks).reshape(4, 64)
    for i in range(SYN["layers"]):
        w.update({f"blk.{i}.attn_norm.weight": r(dim) + 1, f"blk.{i}.attn_q.weight": r(q, dim),
                  f"blk.{i}.attn_k.weight": r(kv, dim), f"blk.{i}.attn_v.weight": r(kv, dim),
                  f"blk.{i}.attn_output.weight": r(dim, q), f"blk.{i}.ffn_norm.weight": r(dim) + 1,
                  f"blk.{i}.ffn_gate.weight": r(hidden, dim), f"blk.{i}.ffn_down.weight": r(dim, hidden),
                  f"blk.{i}.ffn_up.weight": r(hidden, dim)})
    w["output_norm.weight"] = r(dim) + 1
    w["output.weight"] = r(vocab, dim)
    return w


HF_NAMES = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
            "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
            "ffn_gate": "mlp.gate_proj", "ffn_down": "mlp.down_proj", "ffn_up": "mlp.up_proj"}
META_NAMES = {"attn_norm": "attention_norm", "attn_q": "attention.wq", "attn_k": "attention.wk",
              "attn_v": "attention.wv", "attn_output": "attention.wo", "ffn_norm": "ffn_norm",
              "ffn_gate": "feed_forward.w1", "ffn_down": "feed_forward.w2", "ffn_up": "feed_forward.w3"}


def hf_permute(w, n_heads):
    """Hugging Face's converter: w.view(n_heads, hs//2, 2, in).transpose(1, 2).reshape(out, in)."""
    out, inp = w.shape
    return w.reshape(n_heads, out // n_heads // 2, 2, inp).transpose(0, 2, 1, 3).reshape(out, inp)


def hf_state(w):
    s = {"model.embed_tokens.weight": w["token_embd.weight"], "model.norm.weight": w["output_norm.weight"],
         "lm_head.weight": w["output.weight"]}
    for i in range(SYN["layers"]):
        for short, hf in HF_NAMES.items():
            t = w[f"blk.{i}.{short}.weight"]
            if short == "attn_q":
                t = hf_permute(t, SYN["heads"])
            elif short == "attn_k":
                t = hf_permute(t, SYN["kv_heads"])
            s[f"model.layers.{i}.{hf}.weight"] = t
    return s


def hf_config(**over):
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": SYN["dim"],
         "intermediate_size": SYN["hidden"], "num_hidden_layers": SYN["layers"],
         "num_attention_heads": SYN["heads"], "num_key_value_heads": SYN["kv_heads"], "vocab_size": SYN["vocab"],
         "rms_norm_eps": 1e-6, "rope_theta": 500000.0, "max_position_embeddings": 256,
         "tie_word_embeddings": False}
    c.update(over)
    return c


def write_safetensors(path, tensors, dtype="F32", override=None):
    """The safetensors layout: u64 header length, JSON header, data."""
    header, blobs, offset = {}, [], 0
    for name, a in tensors.items():
        dt = (override or {}).get(name, dtype)
        if dt == "F32":
            b = a.astype("<f4").tobytes()
        elif dt == "F16":
            b = a.astype("<f2").tobytes()
        elif dt == "BF16":
            b = (a.astype("<f4").view("<u4") >> 16).astype("<u2").tobytes()  # truncation: the stored values
        elif dt == "F64":
            b = a.astype("<f8").tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def stored(a, dtype):
    """The float32 values a tensor written as dtype holds."""
    if dtype == "F16":
        return a.astype(np.float16).astype(np.float32)
    if dtype == "BF16":
        return ((a.astype(np.float32).view(np.uint32) >> 16) << 16).view(np.float32)
    return a


def make_hf(folder, dtype="F32", shards=2, config=None, override=None, tokenizer=True):
    os.makedirs(folder, exist_ok=True)
    s = hf_state(syn_weights())
    names = list(s)
    per = (len(names) + shards - 1) // shards
    for k in range(shards):
        part = {n: s[n] for n in names[k * per:(k + 1) * per]}
        write_safetensors(os.path.join(folder, f"model-{k + 1:05d}-of-{shards:05d}.safetensors"), part, dtype,
                          override)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config or hf_config(), f)
    if tokenizer:
        shutil.copy(model("tok512.model"), os.path.join(folder, "tokenizer.model"))
    return folder


def make_meta(folder, n_shards=2):
    """Meta's layout, model-parallel: each shard holds a slice of every matrix."""
    os.makedirs(folder, exist_ok=True)
    w = syn_weights()
    split = {"tok_embeddings.weight": 1, "output.weight": 0, "norm.weight": None}
    full = {"tok_embeddings.weight": w["token_embd.weight"], "output.weight": w["output.weight"],
            "norm.weight": w["output_norm.weight"]}
    axes = {"attention_norm": None, "ffn_norm": None, "attention.wq": 0, "attention.wk": 0, "attention.wv": 0,
            "attention.wo": 1, "feed_forward.w1": 0, "feed_forward.w2": 1, "feed_forward.w3": 0}
    for i in range(SYN["layers"]):
        for short, meta in META_NAMES.items():
            full[f"layers.{i}.{meta}.weight"] = w[f"blk.{i}.{short}.weight"]
            split[f"layers.{i}.{meta}.weight"] = axes[meta]
    for k in range(n_shards):
        shard = {}
        for name, a in full.items():
            ax = split[name]
            part = a if ax is None else np.split(a, n_shards, axis=ax)[k]
            if name.startswith("layers.1"):  # layer 1 in bfloat16 (values cut to bf16 first: exact)
                shard[name] = torch.from_numpy(np.ascontiguousarray(stored(part, "BF16"))).to(torch.bfloat16)
            else:
                shard[name] = torch.from_numpy(np.ascontiguousarray(part))
        torch.save(shard, os.path.join(folder, f"consolidated.{k:02d}.pth"))
    params = {"dim": SYN["dim"], "n_layers": SYN["layers"], "n_heads": SYN["heads"], "n_kv_heads": SYN["kv_heads"],
              "vocab_size": -1, "multiple_of": 32, "norm_eps": 1e-5, "rope_theta": 10000.0}
    with open(os.path.join(folder, "params.json"), "w") as f:
        json.dump(params, f)
    shutil.copy(model("tok512.model"), os.path.join(os.path.dirname(folder), "tokenizer.model"))  # one folder up
    return folder


def make_llama2c_v1(path):
    """llama2.c version 1: "ak42", version 1, 7 int32, shared byte, zeros to 256;
    norms first, then the matrices, then the classifier (not shared here)."""
    w, L = syn_weights(), SYN["layers"]
    header = struct.pack("<Ii7iB", 0x616B3432, 1, SYN["dim"], SYN["hidden"], L, SYN["heads"], SYN["kv_heads"],
                         SYN["vocab"], 256, 0)
    parts = [header + bytes(256 - len(header))]
    parts += [w[f"blk.{i}.attn_norm.weight"].tobytes() for i in range(L)]
    parts += [w[f"blk.{i}.ffn_norm.weight"].tobytes() for i in range(L)]
    parts += [w["output_norm.weight"].tobytes(), w["token_embd.weight"].tobytes()]
    for short in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"):
        parts += [w[f"blk.{i}.{short}.weight"].tobytes() for i in range(L)]
    parts.append(w["output.weight"].tobytes())
    with open(path, "wb") as f:
        f.write(b"".join(parts))
    return path


def check_against(g, weights, transform=lambda name, a: a):
    expect(set(g.tensors) == set(weights), f"tensor names: extra {sorted(set(g.tensors) - set(weights))}, "
                                           f"missing {sorted(set(weights) - set(g.tensors))}")
    for name, a in weights.items():
        want = transform(name, a)
        got = g.array(name)
        expect(got.shape == want.shape, f"{name}: shape {got.shape} vs {want.shape}")
        expect(np.array_equal(got, want), f"{name}: values differ (max {np.abs(got - want).max()})")


def check_synthetic_metadata(g, context, eps, theta):
    check_metadata_types(g)
    check_layout(g)
    for key, v in [("llama.embedding_length", SYN["dim"]), ("llama.feed_forward_length", SYN["hidden"]),
                   ("llama.block_count", SYN["layers"]), ("llama.attention.head_count", SYN["heads"]),
                   ("llama.attention.head_count_kv", SYN["kv_heads"]), ("llama.rope.dimension_count", SYN["hs"]),
                   ("llama.context_length", context)]:
        expect(g.kv[key] == v, f"{key} = {g.kv[key]}, expected {v}")
    expect(g.kv["llama.attention.layer_norm_rms_epsilon"] == np.float32(eps), "eps")
    expect(g.kv["llama.rope.freq_base"] == np.float32(theta), "freq_base")
    tokens, types = g.kv["tokenizer.ggml.tokens"], g.kv["tokenizer.ggml.token_type"]
    expect(len(tokens) == SYN["vocab"], f"{len(tokens)} tokens")
    expect(tokens[512:] == [f"[PAD{i}]" for i in range(512, 520)] and all(types[512:] == 5),
           "padding rows past the tokenizer are not UNUSED [PADn]")


def t_syn_hf(dtype, shards):
    folder = make_hf(os.path.join(TMP, f"syn-hf-{dtype}-{shards}"), dtype, shards)
    g = exported(f"syn-hf-{dtype}-{shards}", "--hf", folder)
    check_against(g, syn_weights(), lambda name, a: stored(a, dtype))
    check_synthetic_metadata(g, 256, 1e-6, 500000.0)
    expect("output.weight" in g.tensors, "untied output.weight missing")


def t_syn_hf_bin():
    need_torch()
    folder = os.path.join(TMP, "syn-hf-bin")
    os.makedirs(folder)
    s = hf_state(syn_weights())
    names = list(s)
    torch.save({n: torch.from_numpy(np.ascontiguousarray(s[n])) for n in names[:10]},
               os.path.join(folder, "pytorch_model-00001-of-00002.bin"))
    torch.save({n: torch.from_numpy(np.ascontiguousarray(s[n])).half() for n in names[10:]},
               os.path.join(folder, "pytorch_model-00002-of-00002.bin"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(hf_config(), f)
    g = exported("syn-hf-bin", "--hf", folder, "--tokenizer", model("tok512.model"))
    idx = {n: k for k, n in enumerate(names)}
    gguf_to_hf = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
                  "output.weight": "lm_head.weight"}
    for i in range(SYN["layers"]):
        for short, hf in HF_NAMES.items():
            gguf_to_hf[f"blk.{i}.{short}.weight"] = f"model.layers.{i}.{hf}.weight"
    check_against(g, syn_weights(), lambda name, a: stored(a, "F16") if idx[gguf_to_hf[name]] >= 10 else a)


def t_syn_meta():
    need_torch()
    folder = make_meta(os.path.join(TMP, "syn-meta-root", "7B"))
    g = exported("syn-meta", "--meta-llama", folder, "--context", "300")
    check_against(g, syn_weights(), lambda name, a: stored(a, "BF16") if name.startswith("blk.1.") else a)
    check_synthetic_metadata(g, 300, 1e-5, 10000.0)


def t_syn_llama2c_v1():
    path = make_llama2c_v1(os.path.join(TMP, "syn-v1.bin"))
    g = exported("syn-v1", "--llama2c", path, "--tokenizer", model("tok512.model"))
    check_against(g, syn_weights())
    check_synthetic_metadata(g, 256, 1e-5, 10000.0)


def t_hand_blocks(out_type):
    folder = os.path.join(TMP, "syn-hf-F32-1")
    if not os.path.isdir(folder):
        make_hf(folder, "F32", 1)
    g = exported(f"syn-hf-{out_type}", "--hf", folder, "--type", out_type)
    t = g.tensors["token_embd.weight"]
    expect(t.type == (GGML_Q8_0 if out_type == "q8_0" else GGML_Q4_0), f"token_embd is {t.type_name}")
    blocks, size, first = (Q8_BLOCKS, 34, 0) if out_type == "q8_0" else (Q4_BLOCKS, 18, 4)
    raw = g.raw("token_embd.weight")
    for k, (values, want_hex) in enumerate(blocks):
        got = raw[(first + k) * size:(first + k + 1) * size]
        expect(got.hex() == want_hex, f"block {k}: {got.hex()} != hand-computed {want_hex}")
        ref = (ref_q8_0_block if out_type == "q8_0" else ref_q4_0_block)(values)
        expect(ref.hex() == want_hex, f"block {k}: the test's reference quantizer disagrees with the hand value")


# -----------------------------------------------------------------------------
# llama2.c inputs: version 2 (int8, dequantized) and the untied tiny model

def t_llama2c_v2():
    g, a = exported("stories260K-q80", "--llama2c", model("stories260K_q80_gs4.bin"),
                    "--tokenizer", model("tok512.model")), anchor()
    expect(set(g.tensors) == set(a.tensors) - {"output.weight"}, "tensor names")
    for name in g.tensors:
        x, y = a.array(name), g.array(name)
        if x.ndim == 1:
            expect(np.array_equal(x, y), f"{name}: norms are float32 in version 2 files and must be exact")
            continue
        groups = x.reshape(-1, 4).astype(np.float64)  # group size 4 along the flattened matrix
        bound = np.abs(groups).max(axis=1, keepdims=True) / 127 / 2 * (1 + 1e-5) + 1e-12
        err = np.abs(groups - y.reshape(-1, 4))
        expect((err <= bound).all(), f"{name}: dequantized values beyond max|w|/254 of llama.cpp's")


def t_tiny_random():
    g = exported("tiny-random", "--llama2c", model("llama-2-tiny-random.bin"), "--tokenizer", model("tokenizer.model"))
    a = GGUFFile(model("llama-2-tiny-random.gguf"))
    expect(set(g.tensors) == set(a.tensors), f"names: {sorted(set(g.tensors) ^ set(a.tensors))}")
    expect("output.weight" in g.tensors, "untied output.weight missing")
    for name in a.tensors:
        expect(g.tensors[name].ne == a.tensors[name].ne, f"{name}: ne")
        expect(np.array_equal(g.array(name), a.array(name)), f"{name}: differs from the GGUF's values upcast to F32")
    expect(g.kv["tokenizer.ggml.tokens"] == a.kv["tokenizer.ggml.tokens"], "tokens")
    expect(np.array_equal(g.kv["tokenizer.ggml.scores"], a.kv["tokenizer.ggml.scores"]), "scores")
    expect(np.array_equal(g.kv["tokenizer.ggml.token_type"], a.kv["tokenizer.ggml.token_type"]), "token types")
    expect(g.kv["llama.context_length"] == 4096 and g.kv["llama.vocab_size"] == 32000, "context/vocab")


# -----------------------------------------------------------------------------
# 5. Errors: exit status 1, one line on stderr, no output and no temporary file

def expect_error(args, contains, cwd_files=None):
    work = tempfile.mkdtemp(dir=TMP, prefix="err.")
    for name, content in (cwd_files or {}).items():
        path = os.path.join(work, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(content, str) and os.path.isfile(content):
            shutil.copy(content, path)
        else:
            with open(path, "wb" if isinstance(content, bytes) else "w") as f:
                f.write(content)
    before = set(os.listdir(work))
    rc, out, err = run_export([a.replace("{work}", work) for a in args], os.path.join(work, "out.gguf"), cwd=work)
    expect(rc == 1, f"exit status {rc}, expected 1 (stderr: {err.strip()[:200]})")
    lines = err.splitlines()
    expect(len(lines) == 1 and lines[0].startswith("export.py: "), f"stderr is not one 'export.py: ' line: {err!r}")
    expect("Traceback" not in err, "traceback")
    expect(contains.lower() in err.lower(), f"message {lines[0]!r} does not mention {contains!r}")
    expect(set(os.listdir(work)) == before, f"left behind: {sorted(set(os.listdir(work)) - before)}")


def t_errors():
    syn = os.path.join(TMP, "syn-hf-F32-1")
    if not os.path.isdir(syn):
        make_hf(syn, "F32", 1)
    bad_shape = hf_config(intermediate_size=100)
    cases = [
        (["--hf", "{work}/missing"], "no such folder", None),
        (["--meta-llama", "{work}/missing"], "no such folder", None),
        (["--llama2c", "{work}/missing.bin"], "no such file", None),
        (["--hf", "{work}/d"], "config.json", {"d/notes.txt": "x"}),
        (["--meta-llama", "{work}/d"], "params.json", {"d/notes.txt": "x"}),
        (["--hf", "{work}/d"], "use --meta-llama", {"d/params.json": "{}"}),
        (["--hf", "{work}/d"], "safetensors", {"d/config.json": json.dumps(hf_config())}),  # no weights
        (["--hf", "{work}/d"], "JSON", {"d/config.json": "{oops"}),
        (["--meta-llama", "{work}/d"], "consolidated", {"d/params.json": "{}"}),
        (["--hf", "{work}/d"], "shape", {"d/config.json": json.dumps(bad_shape),
                                         "d/model.safetensors": os.path.join(syn, "model-00001-of-00001.safetensors"),
                                         "d/tokenizer.model": model("tok512.model")}),
        (["--llama2c", "{work}/m.bin"], "tokenizer.model", {"m.bin": model("stories260K.bin")}),
        (["--llama2c", "{work}/m.bin", "--tokenizer", model("tok512.model")], "implies",
         {"m.bin": open(model("stories260K.bin"), "rb").read()[:100000]}),
        (["--llama2c", model("tok512.model"), "--tokenizer", model("tok512.model")], "llama2.c", None),
        (["--llama2c", model("stories260K.bin"), "--tokenizer", model("tok512.bin")], "SentencePiece", None),
        (["--llama2c", model("stories260K.bin"), "--tokenizer", model("tokenizer.model")], "32000", None),
    ]
    for args, contains, files in cases:
        try:
            expect_error(args, contains, files)
        except Failure as e:
            raise Failure(f"{' '.join(args)}: {e}")


def t_error_midway():
    """A tensor that fails only when its turn comes (F64 is not supported): the
    temporary file, by then half-written, must be gone."""
    folder = os.path.join(TMP, "err-midway")
    make_hf(folder, "F32", 1, override={"model.layers.1.mlp.up_proj.weight": "F64"})
    work = tempfile.mkdtemp(dir=TMP, prefix="err.")
    rc, _, err = run_export(["--hf", folder], os.path.join(work, "out.gguf"))
    expect(rc == 1 and len(err.splitlines()) == 1 and "F64" in err, f"rc {rc}, stderr {err!r}")
    expect(os.listdir(work) == [], f"left behind: {os.listdir(work)}")

# export.py with its tensor writer slowed after the first tensor, so that a signal finds the
# temporary file half-written.
SLOW_EXPORT = """
import sys, time
sys.path.insert(0, sys.argv.pop(1))
import export
write = export.write_tensor
def slow(*args, **kwargs):
    write(*args, **kwargs)
    time.sleep(60)
export.write_tensor = slow
sys.argv[0] = "export.py"
export.main()
"""


def t_signal_midway(signame):
    """SIGTERM or SIGHUP in the middle of writing: one line on stderr naming it, status 1,
    and the temporary file (OUT.tmpPID) gone, as after Ctrl-C."""
    import signal
    work = tempfile.mkdtemp(dir=TMP, prefix="sig.")
    out = os.path.join(work, "out.gguf")
    p = subprocess.Popen([PYTHON, "-c", SLOW_EXPORT, ROOT, out, "--llama2c", model("stories260K.bin"),
                          "--tokenizer", model("tok512.model")], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline and not os.listdir(work) and p.poll() is None:
        time.sleep(0.05)
    started = any(".tmp" in f for f in os.listdir(work))
    p.send_signal(getattr(signal, signame))
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    expect(started, f"the temporary file never appeared (status {p.returncode}, stderr {err!r})")
    expect(p.returncode == 1 and len(err.splitlines()) == 1 and signame in err, f"rc {p.returncode}, stderr {err!r}")
    expect(os.listdir(work) == [], f"left behind: {os.listdir(work)}")


# -----------------------------------------------------------------------------
# 6. Llama 3: tokenizer.json (byte-level BPE), rope_scaling llama3, tied embeddings.
# The model is tests/make_llama3_model.py's (Llama 3.2's shape, random weights);
# expected values are recomputed here from tokenizer.json and config.json.

LLAMA3_DIR = os.path.join(TMP, "llama3-random")
_llama3 = {}


def llama3_folder():
    if not os.path.isdir(LLAMA3_DIR):
        p = subprocess.run([PYTHON, os.path.join(HERE, "make_llama3_model.py"), LLAMA3_DIR, MODELS],
                           capture_output=True, text=True)
        expect(p.returncode == 0, f"make_llama3_model.py failed: {p.stderr.strip()[-200:]}")
    return LLAMA3_DIR


def llama3_json(name):
    """models/llama3/tokenizer.json or tokenizer_config.json, parsed once."""
    if name not in _llama3:
        with open(model(os.path.join("llama3", name)), encoding="utf-8") as f:
            _llama3[name] = json.load(f)
    return _llama3[name]


def llama3_export(out_type):
    key = f"gguf-{out_type}"
    if key not in _llama3:  # parsed once: 400,000 strings
        _llama3[key] = exported(f"llama3-{out_type}", "--hf", llama3_folder(), "--type", out_type)
    return _llama3[key]


def llama3_weights():
    if "weights" not in _llama3:
        import make_llama3_model
        _llama3["weights"] = make_llama3_model.weights()
    return _llama3["weights"]


def t_llama3_metadata():
    g = llama3_export("f32")
    check_layout(g)
    want = {"general.architecture": (STRING, "llama"), "llama.vocab_size": (UINT32, 128256),
            "llama.context_length": (UINT32, 131072), "llama.embedding_length": (UINT32, 64),
            "llama.block_count": (UINT32, 2), "llama.feed_forward_length": (UINT32, 192),
            "llama.attention.head_count": (UINT32, 4), "llama.attention.head_count_kv": (UINT32, 2),
            "llama.rope.dimension_count": (UINT32, 16), "llama.rope.freq_base": (FLOAT32, 500000.0),
            "llama.attention.key_length": (UINT32, 16), "llama.attention.value_length": (UINT32, 16),
            "tokenizer.ggml.model": (STRING, "gpt2"), "tokenizer.ggml.pre": (STRING, "llama-bpe"),
            "tokenizer.ggml.bos_token_id": (UINT32, 128000), "tokenizer.ggml.eos_token_id": (UINT32, 128009),
            "tokenizer.ggml.add_bos_token": (BOOL, True), "tokenizer.ggml.add_sep_token": (BOOL, False)}
    for key, (vtype, value) in want.items():
        expect(key in g.kv, f"no {key}")
        expect(g.types[key] == vtype and g.kv[key] == value, f"{key} = {g.kv[key]!r} ({g.types[key]}), "
                                                              f"expected {value!r} ({vtype})")
    for key, etype in (("tokens", STRING), ("token_type", INT32), ("merges", STRING)):
        expect(g.types[f"tokenizer.ggml.{key}"] == (ARRAY, etype), f"tokenizer.ggml.{key} type")
    # a BPE vocabulary has no scores; Llama 3 scales RoPE by rope_freqs, not by a scaling key
    for key in ("tokenizer.ggml.scores", "llama.rope.scaling.type", "tokenizer.ggml.unknown_token_id"):
        expect(key not in g.kv, f"{key} should not be written")


def t_llama3_tokens():
    g, tj = llama3_export("f32"), llama3_json("tokenizer.json")
    tokens, types = g.kv["tokenizer.ggml.tokens"], g.kv["tokenizer.ggml.token_type"]
    expect(len(tokens) == 128256 and len(types) == 128256, f"{len(tokens)} tokens")
    by_id = sorted((i, t) for t, i in tj["model"]["vocab"].items())
    expect([i for i, _ in by_id] == list(range(128000)), "tokenizer.json's vocabulary is not ids 0..127999")
    expect(tokens[:128000] == [t for _, t in by_id], "tokens 0..127999 are not the vocabulary in id order")
    expect(tokens[128000:] == [a["content"] for a in sorted(tj["added_tokens"], key=lambda a: a["id"])],
           "tokens 128000.. are not the added tokens")
    expect(tokens[128000] == "<|begin_of_text|>" and tokens[128009] == "<|eot_id|>", "special token names")
    expect(all(types[:128000] == 1), "a vocabulary token is not NORMAL (1)")
    expect(all(types[128000:] == 3), "an added (special) token is not CONTROL (3)")


def t_llama3_merges():
    g, tj = llama3_export("f32"), llama3_json("tokenizer.json")
    merges = g.kv["tokenizer.ggml.merges"]
    expect(len(merges) == 280147, f"{len(merges)} merges, expected 280,147")
    expect(merges[:3] == ["\u0120 \u0120", "\u0120 \u0120\u0120\u0120", "\u0120\u0120 \u0120\u0120"],
           f"first merges {merges[:3]}")
    expect(merges == [" ".join(p) for p in tj["model"]["merges"]], "merges differ from tokenizer.json's pairs")


def llama3_factors_float64(head_dim, theta, s):
    """Each pair's frequency divided by Llama 3's scaled one, from Meta's definition
    (apply_scaling) in float64: the value rope_freqs.weight must hold."""
    out = []
    for i in range(head_dim // 2):
        freq = theta ** (-2 * i / head_dim)
        wavelen = 2 * math.pi / freq
        if wavelen < s["original_max_position_embeddings"] / s["high_freq_factor"]:
            scaled = freq
        elif wavelen > s["original_max_position_embeddings"] / s["low_freq_factor"]:
            scaled = freq / s["factor"]
        else:
            smooth = (s["original_max_position_embeddings"] / wavelen - s["low_freq_factor"]) / \
                (s["high_freq_factor"] - s["low_freq_factor"])
            scaled = (1 - smooth) * freq / s["factor"] + smooth * freq
        out.append(freq / scaled)
    return np.array(out)


def t_llama3_rope_freqs():
    with open(os.path.join(llama3_folder(), "config.json")) as f:
        cfg = json.load(f)
    for out_type in ("f32", "q8_0"):
        g = llama3_export(out_type)
        t = g.tensors.get("rope_freqs.weight")
        expect(t is not None, f"{out_type}: no rope_freqs.weight")
        expect(t.type == GGML_F32 and t.ne == [8], f"{out_type}: rope_freqs is {t.type_name} {t.ne}, expected F32 [8]")
        got = g.array64("rope_freqs.weight")
        want = llama3_factors_float64(16, cfg["rope_theta"], cfg["rope_scaling"])
        expect(np.allclose(got, want, rtol=1e-6, atol=0), f"{out_type}: rope_freqs {got} != {want}")
        expect(list(got[:4]) == [1] * 4 and list(got[5:]) == [32] * 3 and 1 < got[4] < 32,
               f"{out_type}: rope_freqs {got}: expected 1 (fast pairs), 32 (slow) and one in between")
    # the 1B model's head size of 64: three pairs in the smoothed band
    sys.path.insert(0, ROOT)
    import export
    s = {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    got = export.llama3_rope_factors(64, 500000.0, s, "test")
    want = llama3_factors_float64(64, 500000.0, s)
    expect(np.allclose(got, want, rtol=1e-6, atol=0) and ((got > 1) & (got < 32)).sum() == 3,
           f"head size 64: {got} != {want}")


def t_llama3_tensors():
    g, w = llama3_export("f32"), llama3_weights()
    expect("output.weight" not in g.tensors, "tied embeddings, but output.weight is written")
    expect(g.tensor_order[0] == "rope_freqs.weight", f"first tensor {g.tensor_order[0]}")
    expect(np.array_equal(g.array("token_embd.weight"), w["model.embed_tokens.weight"]), "token_embd")
    for i in range(2):
        for short, hf in HF_NAMES.items():
            got, want = g.array(f"blk.{i}.{short}.weight"), w[f"model.layers.{i}.{hf}.weight"]
            if short in ("attn_q", "attn_k"):  # back to Hugging Face's order
                got = hf_permute(got, 4 if short == "attn_q" else 2)
            expect(np.array_equal(got, want), f"blk.{i}.{short}.weight differs from {hf}")


def t_llama3_q8_0_tied():
    g, w = llama3_export("q8_0"), llama3_weights()
    expect(g.kv["general.file_type"] == 7, "file_type")
    expect("output.weight" not in g.tensors, "output.weight written")
    t = g.tensors["token_embd.weight"]
    expect(t.type == GGML_Q8_0 and t.ne == [64, 128256], f"token_embd is {t.type_name} {t.ne}")
    emb = w["model.embed_tokens.weight"]
    rows = [0, 1, 777, 128000, 128255]  # spot checks: the Python reference quantizer is slow
    raw = g.raw("token_embd.weight")
    for r in rows:
        expect(raw[r * 68:(r + 1) * 68] == ref_quantize(emb[r], GGML_Q8_0), f"token_embd row {r} bytes")
    x = emb.reshape(-1, 32).astype(np.float64)
    d16 = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 34)[:, :2].copy().view("<f2").astype(np.float64)
    err = np.abs(x - g.array64("token_embd.weight").reshape(-1, 32))
    expect((err <= quant_error_bound(x, d16, GGML_Q8_0) * (1 + 1e-6) + 1e-12).all(), "token_embd beyond the bound")
    for name in ("blk.0.attn_norm.weight", "output_norm.weight", "rope_freqs.weight"):
        expect(g.tensors[name].type == GGML_F32, f"{name} not F32")


def t_llama3_chat_template():
    g = llama3_export("f32")
    want = llama3_json("tokenizer_config.json")["chat_template"]
    expect(g.types.get("tokenizer.chat_template") == STRING, "no tokenizer.chat_template string")
    expect(g.kv["tokenizer.chat_template"] == want, "chat template differs from tokenizer_config.json's")
    expect("Cutting Knowledge Date" in want and "strftime_now" in want, "not Llama 3.2's template")


def t_llama3_vocab_gguf():
    """The committed vocabulary-only file is the tokenizer part of a model export
    (make references rewrites it; CI checks it comes out the same)."""
    v, g = GGUFFile(model("llama3/llama3-vocab.gguf")), llama3_export("f32")
    expect(len(v.tensors) == 0 and v.kv["general.architecture"] == "llama", "not a vocabulary-only llama GGUF")
    for key in g.kv:
        if key.startswith("tokenizer."):
            same = np.array_equal(v.kv.get(key), g.kv[key]) if isinstance(g.kv[key], np.ndarray) else \
                v.kv.get(key) == g.kv[key]
            expect(same and v.types.get(key) == g.types[key], f"{key} differs from the model export's")
    expect(sorted(k for k in v.kv if k.startswith("tokenizer.")) ==
           sorted(k for k in g.kv if k.startswith("tokenizer.")), "tokenizer keys differ")


def small_tokenizer(merges=(("a", "b"), ("ab", "c")), **over):
    """A tokenizer.json of Llama 3's form with a vocabulary of 7, and a gap at id 8."""
    tj = llama3_json("tokenizer.json")
    t = {"version": "1.0", "added_tokens": [
        {"id": 7, "content": "<|begin_of_text|>", "special": True, "normalized": False},
        {"id": 9, "content": "<|eot_id|>", "special": True, "normalized": False},
        {"id": 10, "content": "my\u2581word", "special": False, "normalized": True}],
        "normalizer": None, "pre_tokenizer": tj["pre_tokenizer"], "post_processor": tj["post_processor"],
        "decoder": tj["decoder"],
        "model": {"type": "BPE", "byte_fallback": False, "ignore_merges": True,
                  "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4, "\u0120": 5, "\u0120a": 6},
                  "merges": [list(m) if isinstance(m, tuple) else m for m in merges]}}
    for key, value in over.items():
        if key in t["model"]:
            t["model"][key] = value
        else:
            t[key] = value
    return json.dumps(t)


SMALL_CONFIG = json.dumps({"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|eot_id|>"},
                           "chat_template": "{{ bos_token }}x"})


def t_llama3_small_vocab():
    """Merges in both forms, token types, a gap in the ids, special ids and flags."""
    results = []
    for form in ("pairs", "strings"):
        folder = os.path.join(TMP, f"small-{form}")
        os.makedirs(folder, exist_ok=True)
        merges = (("a", "b"), ("ab", "c")) if form == "pairs" else ("a b", "ab c")
        with open(os.path.join(folder, "tokenizer.json"), "w") as f:
            f.write(small_tokenizer(merges))
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            f.write(SMALL_CONFIG)
        out = os.path.join(TMP, f"small-{form}.gguf")
        rc, _, err = run_export(["--tokenizer", os.path.join(folder, "tokenizer.json"), "--name", "small"], out)
        expect(rc == 0, f"{form}: exit {rc}: {err.strip()}")
        g = GGUFFile(out)
        expect(len(g.tensors) == 0, "tensors in a vocabulary-only file")
        expect(g.kv["tokenizer.ggml.merges"] == ["a b", "ab c"], f"{form}: merges {g.kv['tokenizer.ggml.merges']}")
        want = ["a", "b", "c", "ab", "abc", "\u0120", "\u0120a", "<|begin_of_text|>", "[PAD8]", "<|eot_id|>", "my word"]
        expect(g.kv["tokenizer.ggml.tokens"] == want, f"tokens {g.kv['tokenizer.ggml.tokens']}")
        expect(list(g.kv["tokenizer.ggml.token_type"]) == [1] * 7 + [3, 5, 3, 4], "token types (NORMAL x7, "
               f"CONTROL, UNUSED, CONTROL, USER_DEFINED): {list(g.kv['tokenizer.ggml.token_type'])}")
        expect(g.kv["tokenizer.ggml.bos_token_id"] == 7 and g.kv["tokenizer.ggml.eos_token_id"] == 9, "bos/eos ids")
        expect(g.kv["tokenizer.ggml.add_bos_token"] is True, "add_bos_token")
        expect(g.kv["tokenizer.chat_template"] == "{{ bos_token }}x", "chat template")
        with open(out, "rb") as f:
            results.append(f.read())
    expect(results[0] == results[1], "the two merge forms give different files")


def t_llama3_errors():
    cfg = json.load(open(os.path.join(llama3_folder(), "config.json")))
    yarn = dict(cfg, rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192})
    bad_head = dict(cfg, head_dim=32)
    gpt2_pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tok = lambda **over: {"t/tokenizer.json": small_tokenizer(**over), "t/tokenizer_config.json": SMALL_CONFIG}
    cases = [
        (["--hf", "{work}/d"], "yarn", {"d/config.json": json.dumps(yarn)}),
        (["--hf", "{work}/d"], "head_dim", {"d/config.json": json.dumps(bad_head)}),
        (["--tokenizer", "{work}/t/tokenizer.json"], "merges[1] 'abc'", tok(merges=["a b", "abc"])),
        (["--tokenizer", "{work}/t/tokenizer.json"], "not in the vocabulary", tok(merges=[["a", "b"], ["ab", "z"]])),
        (["--tokenizer", "{work}/t/tokenizer.json"], "'ca', which is not in", tok(merges=[["c", "a"]])),
        (["--tokenizer", "{work}/t/tokenizer.json"], "no merges", tok(merges=[])),
        (["--tokenizer", "{work}/t/tokenizer.json"], "not BPE", tok(type="Unigram")),
        (["--tokenizer", "{work}/t/tokenizer.json"], "pre_tokenizer", tok(pre_tokenizer=gpt2_pre)),
        (["--tokenizer", "{work}/t/tokenizer.json"], "byte fallback", tok(byte_fallback=True)),
        (["--tokenizer", "{work}/t/tokenizer.json"], "JSON", {"t/tokenizer.json": "{oops"}),
    ]
    for args, contains, files in cases:
        try:
            expect_error(args, contains, files)
        except Failure as e:
            raise Failure(f"{' '.join(args)} ({contains}): {e}")


# -----------------------------------------------------------------------------
# tokenizer.bin output is unchanged

def t_tokenizer_bin(src, ref):
    out = os.path.join(TMP, os.path.basename(ref))
    rc, _, err = run_export(["--tokenizer", model(src)], out)
    expect(rc == 0, f"exit {rc}: {err.strip()}")
    with open(out, "rb") as f, open(model(ref), "rb") as g:
        expect(f.read() == g.read(), f"{out} differs from {ref}")


def main():
    start = time.time()
    if not os.path.isfile(model("stories260K.gguf")):
        print(f"FAIL setup: no models in {MODELS} (give MODELS_DIR)")
        print("0 passed, 1 failed")
        sys.exit(1)
    note(f"models: {MODELS}; PyTorch: {torch.__version__ if torch else 'not installed'}")
    check("reader.stories260K", t_reader_stories)
    check("reader.tiny_random", t_reader_tiny)
    check("tokenizer_bin.llama2", t_tokenizer_bin, "tokenizer.model", "tokenizer.bin")
    check("tokenizer_bin.tok512", t_tokenizer_bin, "tok512.model", "tok512.bin")
    for src in SOURCES:
        check(f"f32.{src}.tensors", t_f32_tensors, src)
        check(f"f32.{src}.tokenizer", t_f32_tokenizer, src)
        check(f"f32.{src}.metadata", t_f32_metadata, src)
    check("f16.values", t_f16)
    for q in ("q8_0", "q4_0"):
        check(f"{q}.blocks", t_quantized, q)
        check(f"{q}.row172_stays_f16", t_non_multiple, q)
        check(f"{q}.hand_blocks", t_hand_blocks, q)
    check("llama2c.v2_dequantized", t_llama2c_v2)
    check("llama2c.tiny_random_untied", t_tiny_random)
    check("synthetic.hf_f32_2shards", t_syn_hf, "F32", 2)
    check("synthetic.hf_bf16", t_syn_hf, "BF16", 1)
    check("synthetic.hf_f16_3shards", t_syn_hf, "F16", 3)
    check("synthetic.hf_pytorch_bin", t_syn_hf_bin)
    check("synthetic.meta_2shards", t_syn_meta)
    check("synthetic.llama2c_v1_untied", t_syn_llama2c_v1)
    check("llama3.metadata", t_llama3_metadata)
    check("llama3.tokens_and_types", t_llama3_tokens)
    check("llama3.merges", t_llama3_merges)
    check("llama3.rope_freqs", t_llama3_rope_freqs)
    check("llama3.tensors_tied", t_llama3_tensors)
    check("llama3.q8_0_tied_embedding", t_llama3_q8_0_tied)
    check("llama3.chat_template", t_llama3_chat_template)
    check("llama3.vocab_gguf", t_llama3_vocab_gguf)
    check("llama3.small_vocab", t_llama3_small_vocab)
    check("llama3.errors", t_llama3_errors)
    check("errors.bad_input", t_errors)
    check("errors.midway_cleanup", t_error_midway)
    check("errors.sigterm_cleanup", t_signal_midway, "SIGTERM")
    check("errors.sighup_cleanup", t_signal_midway, "SIGHUP")
    check("no_temp_files_left", t_no_temp_left)
    note(f"{time.time() - start:.1f} s")
    shutil.rmtree(TMP, ignore_errors=True)
    tail = f", {counts['skipped']} skipped" if counts["skipped"] else ""
    print(f"{counts['passed']} passed, {counts['failed']} failed{tail}")
    sys.exit(1 if counts["failed"] else 0)


if __name__ == "__main__":
    main()
