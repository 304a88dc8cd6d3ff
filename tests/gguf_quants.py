#!/usr/bin/python3
"""gguf_quants.py: dequantization of the GGUF (ggml) tensor types, in NumPy, to float64.

Written for the tests from published descriptions of the formats, not from any
program's code (llama.cpp's and ggml's sources were not read):

  - type ids: the GGUF specification (ggml docs/gguf.md, `enum ggml_type`);
  - the 32-weight blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): llama.cpp's wiki page
    "Tensor Encoding Schemes" and third-party byte-layout notes (e.g. the
    "Quantization Formats In Depth" chapter of the akunu book): a block is a
    float16 scale [+ float16 min] [+ 32 fifth bits] + the packed quants;
  - the k-quants (Q2_K .. Q6_K): llama.cpp pull request #1684 ("k-quants"):
    super-blocks of 256 weights; "type-0" (w = d * q) and "type-1"
    (w = d * q + m) quantization; block scales (and mins) quantized with 4, 6
    or 8 bits against float16 super-block scales; and the wiki's diagram of the
    12-byte 6-bit scale/min packing of Q4_K and Q5_K;
  - IQ4_NL: llama.cpp pull request #5590 (blocks of 32 laid out like Q4_0, the
    4-bit index selecting one of 16 fixed non-linear levels); IQ4_XS: pull
    request #5747 (the same levels in super-blocks of 256 with 6-bit block
    scales).

Where a description leaves a detail open (which bit of a packed byte belongs to
which weight, or how the 6-bit scales of Q3_K are spread over its 12 bytes), the
choice made is said at the type and was checked against llama.cpp's own output on
models/stories260K-wide/: with these decoders the float64 forward pass of
tests/reference_forward.py reproduces llama.cpp's greedy texts on every one of the
15 files up to near-ties, and its perplexities to 3 or 4 digits (see
tests/reference_gguf.py --report). The wrong choices tried (named at the types:
other nibble orders, other scale packings) make the text collapse within a few
tokens and the perplexity run into the hundreds or more.

Every function takes the tensor's raw bytes (whole blocks, little-endian) and
returns a flat float64 array in storage order (ne[0], the row, varies fastest).
Scales are widened to float64 before any product, so the values returned are the
exact values the format encodes (llama.cpp forms the same products in float32).

    /usr/bin/python3 tests/gguf_quants.py    runs a few hand-made blocks through each decoder
"""

import numpy as np

# ggml type ids (GGUF specification, enum ggml_type).
F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 = 0, 1, 2, 3, 6, 7, 8
Q2_K, Q3_K, Q4_K, Q5_K, Q6_K = 10, 11, 12, 13, 14
IQ4_NL, IQ4_XS, BF16 = 20, 23, 30

QK_K = 256   # weights per k-quant (and IQ4_XS) super-block


def _blocks(raw, fields):
    """The bytes as an array of structured blocks (numpy checks the size)."""
    dt = np.dtype(fields)
    if len(raw) % dt.itemsize:
        raise ValueError("%d bytes is not a whole number of %d-byte blocks" % (len(raw), dt.itemsize))
    return np.frombuffer(raw, dtype=dt)


def _f64(a):
    return a.astype(np.float64)


def _low_high_nibbles(qs):
    """qs: (nblocks, 16) bytes of a 32-weight block -> (nblocks, 32) 4-bit values.
    Byte j holds weight j in its low nibble and weight j + 16 in its high nibble
    (the order the legacy types and IQ4_NL/IQ4_XS use: the first half of the block
    in the low nibbles, the second half in the high ones). The other reading of
    "two 4-bit values per byte", weights 2j and 2j+1 in byte j, is what some notes
    say; on wide1-Q4_0-pure.gguf it gives "Once upon a time time time ..." and a
    perplexity near 2000 where llama.cpp's is 3.69."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


# --- floating point --------------------------------------------------------------------

def dequantize_f32(raw):
    return _f64(np.frombuffer(raw, dtype="<f4"))


def dequantize_f16(raw):
    return _f64(np.frombuffer(raw, dtype="<f2"))


def dequantize_bf16(raw):
    """bfloat16: the upper 16 bits of a float32."""
    return _f64((np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32))


# --- 32-weight blocks ------------------------------------------------------------------

def dequantize_q4_0(raw):
    """Q4_0, 18 bytes per 32 weights:
         0  float16 d
         2  16 bytes qs: byte j = weight j (bits 0-3), weight j+16 (bits 4-7)
       w = d * (q - 8),  q in 0..15"""
    b = _blocks(raw, [("d", "<f2"), ("qs", "u1", 16)])
    q = _low_high_nibbles(b["qs"]).astype(np.float64) - 8.0
    return (_f64(b["d"])[:, None] * q).reshape(-1)


def dequantize_q4_1(raw):
    """Q4_1, 20 bytes per 32 weights:
         0  float16 d
         2  float16 m   (the block's minimum)
         4  16 bytes qs, nibbles as in Q4_0
       w = d * q + m,  q in 0..15"""
    b = _blocks(raw, [("d", "<f2"), ("m", "<f2"), ("qs", "u1", 16)])
    q = _low_high_nibbles(b["qs"]).astype(np.float64)
    return (_f64(b["d"])[:, None] * q + _f64(b["m"])[:, None]).reshape(-1)


def _fifth_bits(qh):
    """qh: (nblocks,) uint32 -> (nblocks, 32): bit i of qh is the fifth bit (value 16)
    of weight i."""
    return ((qh[:, None] >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8) << 4


def dequantize_q5_0(raw):
    """Q5_0, 22 bytes per 32 weights:
         0  float16 d
         2  uint32 qh (little-endian): bit i = bit 4 of weight i
         6  16 bytes qs: the low 4 bits, nibbles as in Q4_0
       w = d * (q - 16),  q in 0..31"""
    b = _blocks(raw, [("d", "<f2"), ("qh", "<u4"), ("qs", "u1", 16)])
    q = (_low_high_nibbles(b["qs"]) | _fifth_bits(b["qh"])).astype(np.float64) - 16.0
    return (_f64(b["d"])[:, None] * q).reshape(-1)


def dequantize_q5_1(raw):
    """Q5_1, 24 bytes per 32 weights:
         0  float16 d,  2  float16 m,  4  uint32 qh,  8  16 bytes qs  (bits as in Q5_0)
       w = d * q + m,  q in 0..31"""
    b = _blocks(raw, [("d", "<f2"), ("m", "<f2"), ("qh", "<u4"), ("qs", "u1", 16)])
    q = (_low_high_nibbles(b["qs"]) | _fifth_bits(b["qh"])).astype(np.float64)
    return (_f64(b["d"])[:, None] * q + _f64(b["m"])[:, None]).reshape(-1)


def dequantize_q8_0(raw):
    """Q8_0, 34 bytes per 32 weights:
         0  float16 d,  2  32 int8 q  (weight j = byte j)
       w = d * q"""
    b = _blocks(raw, [("d", "<f2"), ("qs", "i1", 32)])
    return (_f64(b["d"])[:, None] * b["qs"].astype(np.float64)).reshape(-1)


# IQ4_NL's (and IQ4_XS's) 16 non-linear levels, indexed by the 4-bit value. Any other
# table would change every weight of those files; with this one they give llama.cpp's texts.
IQ4_NL_VALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10,
                          1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float64)


def dequantize_iq4_nl(raw):
    """IQ4_NL, 18 bytes per 32 weights (the Q4_0 layout):
         0  float16 d
         2  16 bytes qs: byte j = index of weight j (bits 0-3), of weight j+16 (bits 4-7)
       w = d * IQ4_NL_VALUES[index]"""
    b = _blocks(raw, [("d", "<f2"), ("qs", "u1", 16)])
    return (_f64(b["d"])[:, None] * IQ4_NL_VALUES[_low_high_nibbles(b["qs"])]).reshape(-1)


# --- 256-weight super-blocks (k-quants, IQ4_XS) -----------------------------------------
#
# Weight n of a super-block (0..255) is written n = 128*h + 32*g + l below where a
# type splits the 256 into two halves h of 128 and each half into four groups g of 32
# (l = 0..31). The types that pack several weights per byte put the weights that share
# a byte 32 apart (Q2_K, Q3_K, Q6_K: the same byte of a half serves its four groups at
# bit shifts 0, 2, 4, 6; Q4_K, Q5_K: a byte's low nibble is in one group of 32, its high
# nibble in the next), so each group of 32 weights reads 32 consecutive bytes.

def _crumbs_2bit(qs):
    """qs: (nb, 64) bytes -> (nb, 256) 2-bit values: weight 128*h + 32*g + l is bits
    2g..2g+1 of byte 32*h + l (Q2_K's and Q3_K's low bits)."""
    nb = qs.shape[0]
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)
    q = (qs.reshape(nb, 2, 1, 32) >> shifts[None, None, :, None]) & 3   # (nb, h, g, l)
    return q.reshape(nb, QK_K)


def dequantize_q2_k(raw):
    """Q2_K, 84 bytes per 256 weights ("type-1", 16 blocks of 16):
          0  16 bytes scales: byte j = scale of block j (bits 0-3), min of block j (bits 4-7)
         16  64 bytes qs: 2-bit quants, weight 128*h + 32*g + l = bits 2g..2g+1 of byte 32*h + l
         80  float16 d     (super-block scale of the scales)
         82  float16 dmin  (super-block scale of the mins)
       weight n is in block j = n // 16:  w = d * scale_j * q - dmin * min_j,  q in 0..3"""
    b = _blocks(raw, [("scales", "u1", 16), ("qs", "u1", 64), ("d", "<f2"), ("dmin", "<f2")])
    q = _crumbs_2bit(b["qs"]).astype(np.float64)
    sc = np.repeat(b["scales"] & 0x0F, 16, axis=1).astype(np.float64)
    mn = np.repeat(b["scales"] >> 4, 16, axis=1).astype(np.float64)
    return (_f64(b["d"])[:, None] * sc * q - _f64(b["dmin"])[:, None] * mn).reshape(-1)


def _q3_k_scales(s):
    """Q3_K's sixteen 6-bit block scales from its 12 scale bytes s (nb, 12).

    PR #1684 says only that Q3_K's 16 scales are "quantized with 6 bits" (stored
    unsigned, scale + 32) and the block has 12 bytes for them; it does not say how
    the bits are spread. The packing used here keeps the low 4 bits in the first 8
    bytes and gathers the top 2 bits in the last 4, like Q4_K:
        low 4 bits of scale j:   j < 8: bits 0-3 of byte j;   j >= 8: bits 4-7 of byte j - 8
        high 2 bits of scale j:  bits 2*(j // 4) .. 2*(j // 4) + 1 of byte 8 + j % 4
    This is the one detail of these formats that had to be settled by the files
    alone. Two other plausible readings were tried on wide1-Q3_K_S-pure.gguf: top
    bits at bits 2*(j % 4) of byte 8 + j // 4 (perplexity 177557, "Once upon a time
    time time ..."), and low nibbles in the order byte 0-3 low, 0-3 high, 4-7 low,
    4-7 high (perplexity 69.8, text garbled from the 6th new token). This one gives
    4.62 (llama.cpp: 4.619) and llama.cpp's greedy text (tests/reference_gguf.py
    --report)."""
    j = np.arange(16)
    low = np.where(j < 8, s[:, j % 8] & 0x0F, s[:, j % 8] >> 4)
    high = (s[:, 8 + j % 4] >> (2 * (j // 4)).astype(np.uint8)) & 3
    return (low | (high << 4)).astype(np.int64) - 32


def dequantize_q3_k(raw):
    """Q3_K, 110 bytes per 256 weights ("type-0", 16 blocks of 16):
          0  32 bytes hmask: weight 128*h + 32*g + l has its high bit at bit 4*h + g of byte l
         32  64 bytes qs: the low 2 bits, placed as in Q2_K
         96  12 bytes scales: sixteen 6-bit scales, stored + 32 (packing: _q3_k_scales)
        108  float16 d
       q = low2 - 4 if the high bit is clear, low2 if it is set (q in -4..3; the other
       way round, the perplexity of wide1-Q3_K_S-pure.gguf is in the millions);
       weight n is in block j = n // 16:  w = d * scale_j * q"""
    b = _blocks(raw, [("hmask", "u1", 32), ("qs", "u1", 64), ("scales", "u1", 12), ("d", "<f2")])
    nb = b.shape[0]
    low = _crumbs_2bit(b["qs"]).astype(np.int64)
    bit = np.arange(8, dtype=np.uint8).reshape(2, 4)               # bit 4*h + g, as (h, g)
    high = (b["hmask"][:, None, None, :] >> bit[None, :, :, None]) & 1  # (nb, h, g, l)
    q = low - 4 * (1 - high.reshape(nb, QK_K).astype(np.int64))
    sc = np.repeat(_q3_k_scales(b["scales"]), 16, axis=1)
    return (_f64(b["d"])[:, None] * (sc * q).astype(np.float64)).reshape(-1)


def _k4_scales_mins(s):
    """Q4_K's and Q5_K's eight 6-bit scales and eight 6-bit mins from 12 bytes s (nb, 12),
    as llama.cpp's wiki draws them (A-H the scales of blocks 0-7, a-h their mins; a
    letter's repeats are that value's bits, most significant first):
        bytes 0-3:   EEAAAAAA FFBBBBBB GGCCCCCC HHDDDDDD   scales 0-3 (bits 0-5), scales 4-7 (bits 4-5)
        bytes 4-7:   eeaaaaaa ffbbbbbb ggcccccc hhdddddd   mins 0-3, mins 4-7 (bits 4-5)
        bytes 8-11:  eeeeEEEE ffffFFFF ggggGGGG hhhhHHHH   scales 4-7 and mins 4-7 (bits 0-3)
    (With the nibbles of bytes 8-11 the other way round, wide1-Q4_K_S-pure.gguf's
    text breaks at the first new token.)"""
    sc = np.empty((s.shape[0], 8), dtype=np.int64)
    mn = np.empty((s.shape[0], 8), dtype=np.int64)
    sc[:, :4] = s[:, 0:4] & 63
    mn[:, :4] = s[:, 4:8] & 63
    sc[:, 4:] = (s[:, 8:12] & 0x0F) | ((s[:, 0:4] >> 6) << 4)
    mn[:, 4:] = (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)
    return sc, mn


def _nibbles_k(qs):
    """qs: (nb, 128) bytes -> (nb, 256): weight 64*c + l (l < 32) is the low nibble of byte
    32*c + l, weight 64*c + 32 + l its high nibble (Q4_K, Q5_K). Weights 2i and 2i+1
    in byte i instead break wide1-Q4_K_S-pure.gguf's text at the first new token."""
    nb = qs.shape[0]
    q = qs.reshape(nb, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8)[None, None, :, None]
    return (q & 0x0F).reshape(nb, QK_K)


def dequantize_q4_k(raw):
    """Q4_K, 144 bytes per 256 weights ("type-1", 8 blocks of 32):
          0  float16 d,  2  float16 dmin
          4  12 bytes: 6-bit scales and mins of the 8 blocks (packing: _k4_scales_mins)
         16  128 bytes qs: weight 64*c + l = low nibble of byte 32*c + l,
                           weight 64*c + 32 + l = high nibble of the same byte (l < 32)
       weight n is in block j = n // 32:  w = d * scale_j * q - dmin * min_j,  q in 0..15"""
    b = _blocks(raw, [("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", 12), ("qs", "u1", 128)])
    sc, mn = _k4_scales_mins(b["scales"])
    q = _nibbles_k(b["qs"]).astype(np.float64)
    return (_f64(b["d"])[:, None] * np.repeat(sc, 32, axis=1) * q
            - _f64(b["dmin"])[:, None] * np.repeat(mn, 32, axis=1)).reshape(-1)


def dequantize_q5_k(raw):
    """Q5_K, 176 bytes per 256 weights (Q4_K plus a fifth bit):
          0  float16 d,  2  float16 dmin,  4  12 bytes scales/mins (as Q4_K)
         16  32 bytes qh: weight 32*j + l (block j) has its fifth bit (value 16) at bit j of byte l
         48  128 bytes qs: the low 4 bits, as in Q4_K
       w = d * scale_j * q - dmin * min_j,  q in 0..31"""
    b = _blocks(raw, [("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", 12), ("qh", "u1", 32),
                      ("qs", "u1", 128)])
    nb = b.shape[0]
    sc, mn = _k4_scales_mins(b["scales"])
    high = (b["qh"][:, None, :] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1   # (nb, j, l)
    q = (_nibbles_k(b["qs"]) | (high.reshape(nb, QK_K) << 4)).astype(np.float64)
    return (_f64(b["d"])[:, None] * np.repeat(sc, 32, axis=1) * q
            - _f64(b["dmin"])[:, None] * np.repeat(mn, 32, axis=1)).reshape(-1)


def dequantize_q6_k(raw):
    """Q6_K, 210 bytes per 256 weights ("type-0", 16 blocks of 16, 8-bit scales):
          0  128 bytes ql: low 4 bits; weight 128*h + 32*g + l is in byte 64*h + 32*(g % 2) + l,
                           low nibble for g = 0, 1, high nibble for g = 2, 3
        128  64 bytes qh: high 2 bits; weight 128*h + 32*g + l = bits 2g..2g+1 of byte 32*h + l
        192  16 int8 scales (block j = weights 16j .. 16j+15)
        208  float16 d
       w = d * scale_j * (q - 32),  q in 0..63"""
    b = _blocks(raw, [("ql", "u1", 128), ("qh", "u1", 64), ("scales", "i1", 16), ("d", "<f2")])
    nb = b.shape[0]
    ql = b["ql"].reshape(nb, 2, 2, 32)                                 # (nb, h, g % 2, l)
    low = np.stack([ql & 0x0F, ql >> 4], axis=2).reshape(nb, 2, 4, 32)  # g = 2*(nibble) + g % 2
    shifts = np.array([0, 2, 4, 6], dtype=np.uint8)
    high = (b["qh"].reshape(nb, 2, 1, 32) >> shifts[None, None, :, None]) & 3
    q = (low | (high << 4)).reshape(nb, QK_K).astype(np.float64) - 32.0
    sc = np.repeat(b["scales"].astype(np.float64), 16, axis=1)
    return (_f64(b["d"])[:, None] * sc * q).reshape(-1)


def dequantize_iq4_xs(raw):
    """IQ4_XS, 136 bytes per 256 weights (8 blocks of 32, IQ4_NL's levels, 6-bit scales):
          0  float16 d
          2  uint16 scales_h: bits 2j..2j+1 = the top 2 bits of block j's scale
          4  4 bytes scales_l: block j's low 4 bits = nibble j % 2 (low first) of byte j // 2
          8  128 bytes qs: block j's 16 bytes 16j .. 16j+15, nibbles as in IQ4_NL
                           (byte 16j + i: weight 32j + i low, weight 32j + 16 + i high)
       w = d * (scale_j - 32) * IQ4_NL_VALUES[index]
    (Some third-party notes put weights 2i and 2i+1 in one byte's nibbles instead; the
    files say otherwise: that order garbles wide1-IQ4_XS-pure.gguf's text.)"""
    b = _blocks(raw, [("d", "<f2"), ("scales_h", "<u2"), ("scales_l", "u1", 4), ("qs", "u1", 128)])
    nb = b.shape[0]
    j = np.arange(8)
    low = (b["scales_l"][:, j // 2] >> (4 * (j % 2)).astype(np.uint8)) & 0x0F
    high = (b["scales_h"][:, None] >> (2 * j).astype(np.uint16)) & 3
    ls = (low.astype(np.int64) | (high.astype(np.int64) << 4)) - 32                 # (nb, 8)
    idx = _low_high_nibbles(b["qs"].reshape(nb * 8, 16)).reshape(nb, 8, 32)
    w = _f64(b["d"])[:, None, None] * ls[:, :, None].astype(np.float64) * IQ4_NL_VALUES[idx]
    return w.reshape(-1)


# type id -> (name, weights per block, bytes per block, decoder)
TYPES = {
    F32: ("F32", 1, 4, dequantize_f32),
    F16: ("F16", 1, 2, dequantize_f16),
    BF16: ("BF16", 1, 2, dequantize_bf16),
    Q4_0: ("Q4_0", 32, 18, dequantize_q4_0),
    Q4_1: ("Q4_1", 32, 20, dequantize_q4_1),
    Q5_0: ("Q5_0", 32, 22, dequantize_q5_0),
    Q5_1: ("Q5_1", 32, 24, dequantize_q5_1),
    Q8_0: ("Q8_0", 32, 34, dequantize_q8_0),
    Q2_K: ("Q2_K", QK_K, 84, dequantize_q2_k),
    Q3_K: ("Q3_K", QK_K, 110, dequantize_q3_k),
    Q4_K: ("Q4_K", QK_K, 144, dequantize_q4_k),
    Q5_K: ("Q5_K", QK_K, 176, dequantize_q5_k),
    Q6_K: ("Q6_K", QK_K, 210, dequantize_q6_k),
    IQ4_NL: ("IQ4_NL", 32, 18, dequantize_iq4_nl),
    IQ4_XS: ("IQ4_XS", QK_K, 136, dequantize_iq4_xs),
}


def dequantize(raw, ggml_type):
    """Raw bytes of whole blocks of `ggml_type` -> flat float64 array."""
    if ggml_type not in TYPES:
        raise ValueError("no decoder for ggml type %d" % ggml_type)
    return TYPES[ggml_type][3](raw)


def _selftest():
    """Hand-made blocks with known values, one or two per type."""
    f16 = lambda x: np.float16(x).tobytes()
    ok = True

    def check(name, got, want):
        nonlocal ok
        good = np.array_equal(got, np.asarray(want, dtype=np.float64))
        ok &= good
        print("ok" if good else "FAIL", name)

    # Q4_0: byte j = (weight j + 8) | (weight j+16 + 8) << 4, d = 0.5
    w = np.arange(32) % 16 - 8
    qs = bytes(((w[j] + 8) | ((w[j + 16] + 8) << 4)) for j in range(16))
    check("q4_0", dequantize_q4_0(f16(0.5) + qs), 0.5 * w)
    check("iq4_nl", dequantize_iq4_nl(f16(2.0) + qs), 2.0 * IQ4_NL_VALUES[w + 8])
    check("q4_1", dequantize_q4_1(f16(0.25) + f16(-1.0) + qs), 0.25 * (w + 8) - 1.0)
    # Q5_0: weights -16..15; fifth bit of weight i in bit i of qh
    w = np.arange(32) - 16
    u = w + 16
    qh = sum(int(u[i] >> 4) << i for i in range(32)).to_bytes(4, "little")
    qs = bytes(((u[j] & 15) | ((u[j + 16] & 15) << 4)) for j in range(16))
    check("q5_0", dequantize_q5_0(f16(1.0) + qh + qs), w)
    check("q5_1", dequantize_q5_1(f16(1.0) + f16(0.5) + qh + qs), u + 0.5)
    check("q8_0", dequantize_q8_0(f16(0.5) + np.arange(-16, 16, dtype=np.int8).tobytes()),
          0.5 * np.arange(-16, 16))
    # Q2_K: block j scale j % 16, min 1; weights of byte 32h+l at shifts 2g all q = g
    scales = bytes((j % 16) | (1 << 4) for j in range(16))
    qs = bytes([0b11100100] * 64)
    n = np.arange(256)
    check("q2_k", dequantize_q2_k(scales + qs + f16(1.0) + f16(0.5)),
          (n // 16 % 16) * ((n % 128) // 32) - 0.5)
    # Q6_K: all q = 33 (low 1, high 2 -> 1 + 32), scales 1..16
    ql = bytes([0x11] * 128)
    qh = bytes([0b10101010] * 64)
    sc = np.arange(1, 17, dtype=np.int8).tobytes()
    check("q6_k", dequantize_q6_k(ql + qh + sc + f16(0.5)), 0.5 * (n // 16 + 1) * 1)
    # Q4_K: scales 1..8, mins 0, d 1: weight n = (n // 32 + 1) * nibble(n)
    s = np.zeros(12, dtype=np.uint8)
    s[0:4] = [1, 2, 3, 4]
    s[8:12] = [5, 6, 7, 8]
    qs = bytes([0x21] * 128)                       # low nibble 1, high nibble 2
    want = (n // 32 + 1) * np.where((n % 64) < 32, 1, 2)
    check("q4_k", dequantize_q4_k(f16(1.0) + f16(0.0) + s.tobytes() + qs), want)
    qh = bytes([0xFF] * 32)                        # every fifth bit set: q + 16
    want = (n // 32 + 1) * (np.where((n % 64) < 32, 1, 2) + 16)
    check("q5_k", dequantize_q5_k(f16(1.0) + f16(0.0) + s.tobytes() + qh + qs), want)
    # Q3_K: block j's scale j + 1 (stored j + 33, packed as _q3_k_scales reads it);
    # every low2 = g (byte 0b11100100) and every high bit set, so q = g
    st = np.arange(16) + 33
    sb = np.zeros(12, dtype=np.uint8)
    for j in range(16):
        sb[j % 8] |= (st[j] & 15) << (4 * (j // 8))
        sb[8 + j % 4] |= (st[j] >> 4) << (2 * (j // 4))
    blk = bytes([0xFF] * 32) + bytes([0b11100100] * 64) + sb.tobytes() + f16(0.5)
    check("q3_k", dequantize_q3_k(blk), 0.5 * (n // 16 + 1) * ((n % 128) // 32))
    # IQ4_XS: block j's scale j + 30 (so j - 2 after the -32); indices 1 (low), 14 (high)
    ls = np.arange(8) + 30
    sl = bytes(int((ls[2 * k] & 15) | ((ls[2 * k + 1] & 15) << 4)) for k in range(4))
    sh = sum(int((ls[j] >> 4) & 3) << (2 * j) for j in range(8)).to_bytes(2, "little")
    blk = f16(1.0) + sh + sl + bytes([0xE1] * 128)
    check("iq4_xs", dequantize_iq4_xs(blk),
          (n // 32 - 2) * IQ4_NL_VALUES[np.where((n % 32) < 16, 1, 14)])
    return ok


if __name__ == "__main__":
    import sys
    sys.exit(0 if _selftest() else 1)
