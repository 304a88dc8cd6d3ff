#!/usr/bin/env python3
"""bench.py: how fast is ./run, and how close to the memory's limit?

`make bench` runs this script. It

 1. writes random-weight model files into a cache directory outside the
    repository, once (a file is only written again when it is missing or has
    the wrong size):
    - four Llama 2 shapes (15M, 42M, 110M and TinyLlama's 1.1B), each as
      llama2.c checkpoints in fp32 (its legacy layout) and int8 (its
      "version 2" layout), and as GGUF files (llama.cpp's format) in Q8_0
      and Q4_0, and at 1.1B also in Q4_K_M;
    - Llama 2 7B in GGUF Q4_K_M and Q4_0, written directly as random blocks
      (no fp32 file first);
    - Llama 3.2 1B ("L3-1B") and Llama 3.1 8B ("L3-8B") in GGUF Q8_0 and
      Q4_K_M, random blocks too, with Llama 3's 128,256-token vocabulary
      (from models/llama3/llama3-vocab.gguf) and rope_freqs;
 2. measures this machine's memory read bandwidth with bench/bandwidth.c
    and its arithmetic peak with bench/peak.c (int8 dot products and
    float32 FMAs, on values in registers) before the runs, and again after
    them, and, for the Llama 3 rows,
    what run's sampler costs over 128,256 logits (bench/sampling.c);
 3. runs ./run on every file with 1 and with 2 OpenMP threads, for decode
    speed (empty prompt, greedy) and prompt speed (a 256-token prompt), and
    with 2 threads for decode speed at depth (32 tokens after a prompt that
    fills most of the context: 768 tokens, 1536 at 1.1B, 7B and L3-1B, 512
    at L3-8B); at 7B and L3-8B no 1-thread prompt. The median of up to 5
    runs each, within a time budget;
 4. with LLAMA_CPP_BENCH set, runs llama.cpp's llama-bench on the same GGUF
    files for the same figures, interleaved with run's (see llama_bench_once);
 5. prints one table: speeds, peak memory, and decode speed as a share of
    the bandwidth limit (bytes of weights read per token / bytes per second),
    against the best probe and, for 2 threads, against a quick probe run just
    before each decode run (the bandwidth of the moment), and prompt speed
    as a share of the arithmetic peak; then llama.cpp's figures, if any, in
    extra columns; and sampling's cost, as a share of
    the Llama 3 rows' decode time.

Everything it needs is in the Python standard library and NumPy (and
export.py, whose GGUF metadata and tokenizer code writes the GGUF headers);
llama.cpp is optional, and never needed.

Environment:
  BENCH_CACHE     the cache directory
                  (default ${XDG_CACHE_HOME:-$HOME/.cache}/run-bench; about
                  33 GB: 6.4 for the checkpoints, 2.8 for the small GGUF files,
                  7.9 for the 7B ones, 2.1 for L3-1B's, 13.5 for L3-8B's)
  BENCH_BUDGET    seconds the whole bench may take (default 540); the runs
                  are planned to fit, repeating fewer times when time is short
                  and skipping (and saying so) what would not fit
  BENCH_ROWS      only these rows of the table, e.g. "L3-1B" or "1.1B:Q4_K_M,7B:Q8_0":
                  shapes, or shapes and types; a GGUF type a shape does not
                  have by default may be named (7B:Q8_0, 7.2 GB)
  LLAMA_CPP_BENCH a llama-bench binary to compare with (absent: run alone)

Usage:
  bench.py            the benchmark (what `make bench` runs)
  bench.py --clean    delete the cached files (what `make bench-clean` runs)
  bench.py --write-checkpoints   only write the missing files (the bench
                      does this in a child process, to keep its own memory small)
"""

import json
import math
import os
import re
import shlex
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# NumPy is imported only by the process that writes the checkpoints (see
# write_missing_checkpoints), never by the one that runs ./run: a child's
# ru_maxrss counts its parent's peak RSS too (Python starts it with vfork,
# and the kernel keeps the old image's high-water mark across exec), so this
# process stays small, well under the smallest run's peak RSS.
np = None

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "run"      # what `make bench` builds; the bench runs a copy, see main()
run_binary = RUN
TOKENIZER = REPO / "tokenizer.bin"
BANDWIDTH_SOURCE = REPO / "bench" / "bandwidth.c"
SAMPLING_SOURCE = REPO / "bench" / "sampling.c"
PEAK_SOURCE = REPO / "bench" / "peak.c"

# The whole bench, from the start of this script to the table, must fit in
# this many seconds (the brief: under 10 minutes with `make run`, on an empty
# cache). The runs are planned against it; see Scheduler.
BUDGET_SECONDS = float(os.environ.get("BENCH_BUDGET") or 540)

THREAD_COUNTS = (1, 2)
REPEATS = 5             # runs per measurement; the median is reported (this VM varies by 20% from minute to minute)
PROMPT_TOKENS = 256     # BOS + 255 tokens of text
PROMPT_STEPS = PROMPT_TOKENS + 2  # -n: the prompt, then 2 generated tokens

# The line ./run prints on stderr after generating: the interface between run
# and this bench. Decode speed is the "generated" rate of a run with an empty
# prompt; prompt speed is the "prompt" rate of a run with a 256-token prompt.
STATS_RE = re.compile(
    r"run: prompt (\d+) tokens in ([\d.]+) s \(([\d.]+) tok/s\), "
    r"generated (\d+) tokens in ([\d.]+) s \(([\d.]+) tok/s\)"
)


# ----------------------------------------------------------------------------
# Model shapes and their files


# The file types. llama2.c's two checkpoint layouts (.bin), and GGUF files
# (.gguf, llama.cpp's format) in three of its types: Q8_0 and Q4_0 for every
# matrix, and Q4_K_M, llama.cpp's mixture of K-quants (see gguf_tensor_type).
LEGACY_TYPES = ("fp32", "int8")
GGUF_TYPES = ("Q8_0", "Q4_0", "Q4_K_M")

# ggml's tensor types that the GGUF files use: (type id, values per block,
# bytes per block), as ggml.h and ggml-common.h define them.
GGML_TYPES = {
    "F32": (0, 1, 4),
    "Q4_0": (2, 32, 18),     # f16 d, 16 bytes of nibbles
    "Q8_0": (8, 32, 34),     # f16 d, 32 int8
    "Q4_K": (12, 256, 144),  # f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, 128 bytes of nibbles
    "Q6_K": (14, 256, 210),  # 128 bytes of low nibbles, 64 of high 2 bits, 16 int8 scales, f16 d
}
# general.file_type, as llama.cpp numbers them (LLAMA_FTYPE_MOSTLY_*).
GGUF_FILE_TYPES = {"Q4_0": 2, "Q8_0": 7, "Q4_K_M": 15}

# GGUF's names for the weights (llama.cpp's), by the names Shape.matrices uses.
GGUF_NAMES = {"tok_embeddings": "token_embd", "wq": "attn_q", "wk": "attn_k", "wv": "attn_v",
              "wo": "attn_output", "w1": "ffn_gate", "w2": "ffn_down", "w3": "ffn_up", "wcls": "output"}

# The runs a row of the table gets: (kind, threads). "decode": an empty
# prompt, then greedy generation; "prompt": a 256-token prompt; "depth":
# generation after a prompt that fills most of the context (Shape.depth).
ALL_CELLS = (("decode", 1), ("decode", 2), ("prompt", 1), ("prompt", 2), ("depth", 2))
# The 7B shape's prompts take seconds each: no 1-thread prompt there.
BIG_CELLS = (("decode", 1), ("decode", 2), ("prompt", 2), ("depth", 2))


def use_more_bits(layer, n_layers):
    """llama.cpp's rule (llama-quant.cpp) for the layers whose attn_v and
    ffn_down get more bits in Q4_K_M: the first and last eighth, and every
    third layer in between."""
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


@dataclass(frozen=True)
class Shape:
    name: str
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool  # the classifier is the token embedding
    decode_steps: int        # -n for the decode runs (BOS + generated tokens)
    depth: int               # prompt tokens of the "depth" runs (BOS included)
    types: tuple             # the file types benchmarked at this shape, in the table's order
    cells: tuple = ALL_CELLS  # the runs each type gets: (kind, threads)
    # Llama 3's settings, or None for Llama 2's: the vocabulary is LLAMA3_VOCAB's
    # (128,256 byte-level BPE pieces), RoPE's base 500,000, and the file holds
    # rope_freqs.weight, Llama 3.1's per-pair factors, from this rope_scaling.
    llama3_rope_scaling: dict = None

    @property
    def llama3(self):
        return self.llama3_rope_scaling is not None

    @property
    def rope_theta(self):
        return 500000.0 if self.llama3 else 10000.0

    @property
    def head_size(self):
        return self.dim // self.n_heads

    @property
    def kv_dim(self):
        return self.n_kv_heads * self.head_size

    @property
    def group_size(self):
        # int8: the largest of 64, 32 that divides both widths a row can have.
        for gs in (64, 32):
            if self.dim % gs == 0 and self.hidden_dim % gs == 0:
                return gs
        raise ValueError(f"{self.name}: no group size divides {self.dim} and {self.hidden_dim}")

    def matrices(self):
        """The weight matrices in file order (both llama2.c layouts store them
        in this order): (name, layer or None, rows, cols)."""
        yield ("tok_embeddings", None, self.vocab_size, self.dim)
        per_layer = [
            ("wq", self.dim, self.dim),
            ("wk", self.kv_dim, self.dim),
            ("wv", self.kv_dim, self.dim),
            ("wo", self.dim, self.dim),
            ("w1", self.hidden_dim, self.dim),
            ("w2", self.dim, self.hidden_dim),
            ("w3", self.hidden_dim, self.dim),
        ]
        for name, rows, cols in per_layer:
            for layer in range(self.n_layers):
                yield (name, layer, rows, cols)
        if not self.shared_classifier:
            yield ("wcls", None, self.vocab_size, self.dim)

    def gguf_tensors(self, dtype):
        """The tensors of the GGUF file of this type, in file order (export.py's
        and llama.cpp's converter's): (GGUF name, Shape.matrices' name or None
        for a norm, layer or None, rows, cols, ggml type). A norm is 1 x dim."""
        size = {(name, layer): (rows, cols) for name, layer, rows, cols in self.matrices()}

        def matrix(name, layer):
            prefix = "" if layer is None else f"blk.{layer}."
            return (f"{prefix}{GGUF_NAMES[name]}.weight", name, layer, *size[(name, layer)],
                    self.gguf_tensor_type(dtype, name, layer))

        if self.llama3:  # first, as llama.cpp's converter writes it
            yield ("rope_freqs.weight", None, None, 1, self.head_size // 2, "F32")
        yield matrix("tok_embeddings", None)
        for layer in range(self.n_layers):
            yield (f"blk.{layer}.attn_norm.weight", None, layer, 1, self.dim, "F32")
            yield from (matrix(name, layer) for name in ("wq", "wk", "wv", "wo"))
            yield (f"blk.{layer}.ffn_norm.weight", None, layer, 1, self.dim, "F32")
            yield from (matrix(name, layer) for name in ("w1", "w2", "w3"))
        yield ("output_norm.weight", None, None, 1, self.dim, "F32")
        if not self.shared_classifier:
            yield matrix("wcls", None)

    def gguf_tensor_type(self, dtype, name, layer):
        """The ggml type of a matrix in a GGUF file of this type. Q8_0 and
        Q4_0: every matrix. Q4_K_M, as llama.cpp's llama-quant.cpp picks it:
        Q6_K for the classifier (and for the token embedding when it is the
        classifier), and for attn_v and ffn_down in the layers of
        use_more_bits (about half: 16 of 7B's 32, 10 of 1.1B's 22); Q4_K
        for the rest, the token embedding of a separate classifier included."""
        if dtype != "Q4_K_M":
            return dtype
        if name == "wcls" or (name == "tok_embeddings" and self.shared_classifier):
            return "Q6_K"
        if name in ("wv", "w2") and use_more_bits(layer, self.n_layers):
            return "Q6_K"
        return "Q4_K"

    def n_norm_floats(self):
        return 2 * self.n_layers * self.dim + self.dim  # rms_att, rms_ffn, rms_final

    def file_bytes(self, dtype):
        """The exact size of a llama2.c checkpoint file (a GGUF file's depends
        on its metadata too: see gguf_layout)."""
        if dtype == "fp32":
            weights = sum(r * c for _, _, r, c in self.matrices())
            rope = self.seq_len * self.head_size  # freq_cis_real and _imag, half each
            return 7 * 4 + 4 * (weights + self.n_norm_floats() + rope)
        return 256 + 4 * self.n_norm_floats() + sum(
            self.stored_bytes(name, layer, r, c, dtype) for name, layer, r, c in self.matrices())

    def stored_bytes(self, name, layer, rows, cols, dtype):
        """Bytes that a matrix takes in a file of this type."""
        if dtype == "fp32":
            return 4 * rows * cols
        if dtype == "int8":
            return rows * cols + 4 * (rows * cols // self.group_size)  # int8 values + float32 scales
        _, values, size = GGML_TYPES[self.gguf_tensor_type(dtype, name, layer)]
        return rows * (cols // values) * size

    def multiply_adds_per_token(self):
        """Multiply-adds of the matrix products for one token: every layer's
        matrices and the classifier (the token embedding is a lookup, unless
        it is the classifier too). Attention's are left out: at the prompt
        runs' 256 positions, under 1% of these at every shape here."""
        classifier = "tok_embeddings" if self.shared_classifier else "wcls"
        return sum(r * c for name, _, r, c in self.matrices() if name != "tok_embeddings" or name == classifier)

    def bytes_read_per_token(self, dtype):
        """Weight bytes one decoded token reads: every layer's matrices, the
        classifier (vocab x dim) and the norm vectors. The token embedding is
        not counted when the classifier is separate: only its one row is read."""
        classifier = "tok_embeddings" if self.shared_classifier else "wcls"
        return sum(self.stored_bytes(name, layer, r, c, dtype) for name, layer, r, c in self.matrices()
                   if name not in ("tok_embeddings", "wcls") or name == classifier) + 4 * self.n_norm_floats()


SHAPES = [
    #     name    dim hidden layers heads kv  vocab  seq   shared decode -n, depth, types
    Shape("15M",  288, 768, 6, 6, 6, 32000, 1024, True, 129, 768, LEGACY_TYPES + ("Q8_0", "Q4_0")),
    Shape("42M",  512, 1376, 8, 8, 8, 32000, 1024, True, 129, 768, LEGACY_TYPES + ("Q8_0", "Q4_0")),
    Shape("110M", 768, 2048, 12, 12, 12, 32000, 1024, True, 129, 768, LEGACY_TYPES + ("Q8_0", "Q4_0")),
    # TinyLlama 1.1B: grouped-query attention, separate classifier. Fewer
    # decode steps: about 3 s at the slow end (fp32, 1 thread, near the
    # bandwidth limit) without eating the whole budget.
    Shape("1.1B", 2048, 5632, 22, 32, 4, 32000, 2048, False, 33, 1536, LEGACY_TYPES + GGUF_TYPES),
    # Llama 2 7B, in GGUF only (its fp32 file would be 27 GB, and the disk
    # writes about 0.4 GB/s), and in two types, Q4_K_M and the smaller of
    # Q8_0 and Q4_0 (BENCH_ROWS=7B:Q8_0 adds the third): each run reads
    # 4 GB. Its depth is that of the 1.1B, 1536 of its 4096 positions: a
    # prompt filling most of them would take minutes on 2 cores, each run.
    Shape("7B", 4096, 11008, 32, 32, 32, 32000, 4096, False, 17, 1536, ("Q4_K_M", "Q4_0"), BIG_CELLS),
    # Llama 3.2 1B and Llama 3.1 8B, in GGUF only, Q4_K_M and Q8_0: Llama 3's
    # 128,256-token vocabulary (the classifier is a quarter of the 1B's
    # weights), grouped-query attention (8 KV heads), a 131,072-position
    # context in the file (run and llama-bench reserve only what a run
    # reaches). The 1B shares its classifier with the token embedding (so
    # its Q4_K_M stores both as Q6_K), the 8B has its own output.weight. The
    # 8B files are the bench's largest (4.9 and 8.5 GB): its decode runs are
    # short, and its depth is 512 tokens, not 1536, so that its runs fit the
    # budget beside llama.cpp's.
    Shape("L3-1B", 2048, 8192, 16, 32, 8, 128256, 131072, True, 33, 1536, ("Q8_0", "Q4_K_M"), ALL_CELLS,
          {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
    Shape("L3-8B", 4096, 14336, 32, 32, 8, 128256, 131072, False, 17, 512, ("Q8_0", "Q4_K_M"), BIG_CELLS,
          {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}),
]


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("BENCH_CACHE") or os.path.join(base, "run-bench"))


def checkpoint_path(shape, dtype):
    return cache_dir() / f"{shape.name}-{dtype}.{'gguf' if dtype in GGUF_TYPES else 'bin'}"


def possible_types(shape):
    """The types a shape's file can have: its own, and any GGUF type whose
    blocks fit its rows (K-quants: 256 values)."""
    return [d for d in LEGACY_TYPES + GGUF_TYPES if d in shape.types or (
        d in GGUF_TYPES and all(c % GGML_TYPES[shape.gguf_tensor_type(d, n, l)][1] == 0
                                for n, l, _, c in shape.matrices()))]


def selected_rows():
    """The table's rows, (shape, type): every shape's types, or those that
    BENCH_ROWS names ("7B", "1.1B:Q4_K_M,7B:Q8_0": a shape, or a shape and a
    type, which may be a GGUF type the shape does not have by default)."""
    spec = os.environ.get("BENCH_ROWS", "").strip()
    if not spec:
        return [(s, d) for s in SHAPES for d in s.types]
    rows = []
    for item in spec.split(","):
        name, _, dtype = item.strip().partition(":")
        shape = next((s for s in SHAPES if s.name == name), None)
        if shape is None:
            sys.exit(f"bench: BENCH_ROWS: no shape {name!r}; the shapes: {', '.join(s.name for s in SHAPES)}")
        if dtype and dtype not in possible_types(shape):
            sys.exit(f"bench: BENCH_ROWS: {name} has no type {dtype!r}; it can have {', '.join(possible_types(shape))}")
        rows += [(shape, d) for d in ([dtype] if dtype else shape.types) if (shape, d) not in rows]
    return sorted(rows, key=lambda r: (SHAPES.index(r[0]), (LEGACY_TYPES + GGUF_TYPES).index(r[1])))


# ----------------------------------------------------------------------------
# Writing the checkpoints
#
# Weights are normal(0, 0.02) float32, norm weights 1.0. The classifier rows of
# tokens 0, 1 and 2 (<unk>, BOS, EOS) are zero, so their logits are exactly 0
# while the largest logit is positive: greedy decoding then never stops early
# at BOS or EOS. Both files of a shape come from one stream of random numbers,
# generated tensor by tensor in chunks of rows, so the int8 file is the fp32
# file quantized and memory stays small whatever the model's size.

SEED = 20240917
CHUNK_FLOATS = 1 << 22  # 16 MB of float32 per chunk


def fp32_header(s):
    vocab = s.vocab_size if s.shared_classifier else -s.vocab_size  # negative: separate classifier
    return struct.pack("<7i", s.dim, s.hidden_dim, s.n_layers, s.n_heads, s.n_kv_heads, vocab, s.seq_len)


def int8_header(s):
    header = struct.pack("<Ii7iBi", 0x616B3432, 2, s.dim, s.hidden_dim, s.n_layers, s.n_heads,
                         s.n_kv_heads, s.vocab_size, s.seq_len, int(s.shared_classifier), s.group_size)
    assert len(header) == 41  # group_size at byte 37, unaligned, as llama2.c writes it
    return header + bytes(256 - len(header))


def rope_tables(s):
    """freq_cis_real and freq_cis_imag: cos and sin of pos * 10000^(-2i/head_size).
    run does not read them, but the legacy layout has room for them."""
    i = np.arange(0, s.head_size, 2, dtype=np.float64)
    freqs = 10000.0 ** (-i / s.head_size)
    angles = np.outer(np.arange(s.seq_len), freqs)
    return np.cos(angles).astype("<f4"), np.sin(angles).astype("<f4")


def quantize(w, group_size):
    """Symmetric int8 with one scale per group of consecutive values:
    scale = max|w| / 127, q = round-half-even(w / scale). A group of zeros has
    scale 0 and q 0."""
    groups = w.reshape(-1, group_size)
    scale = np.abs(groups).max(axis=1) / np.float32(127)
    safe = np.where(scale > 0, scale, np.float32(1))
    q = np.rint(groups / safe[:, None]).astype(np.int8)
    return q, scale.astype("<f4")


def write_checkpoints(shape, dtypes):
    """Writes the checkpoint files of shape in the given dtypes ("fp32",
    "int8") in one pass. Each is written to a temporary name and renamed when
    complete, so an interrupted run never leaves a file that looks finished
    (and two benches writing at once do not write into one file)."""
    paths = {d: checkpoint_path(shape, d) for d in dtypes}
    tmp = {d: p.with_name(f"{p.name}.{os.getpid()}.tmp") for d, p in paths.items()}
    files = {d: open(tmp[d], "wb") for d in dtypes}
    try:
        f32, i8 = files.get("fp32"), files.get("int8")
        ones = lambda n: np.ones(n, dtype="<f4")
        if f32:
            f32.write(fp32_header(shape))
        if i8:
            # The norms come first in version 2; they are all 1.0, so they can
            # be written before any random number is drawn.
            i8.write(int8_header(shape))
            i8.write(ones(shape.n_norm_floats()).tobytes())

        rng = np.random.default_rng([SEED] + list(shape.name.encode()))
        buf = np.empty(CHUNK_FLOATS, dtype=np.float32)
        previous = None
        for name, layer, rows, cols in shape.matrices():
            # The legacy layout puts a norm vector before the first wq and the
            # first w1, and the final norm and RoPE tables after the last w3.
            if f32 and name != previous:
                if name == "wq" or name == "w1":
                    f32.write(ones(shape.n_layers * shape.dim).tobytes())  # rms_att / rms_ffn
                if name == "wcls":
                    write_fp32_tail(f32, shape)
            previous = name

            scales = []  # int8: all of the matrix's values first, then its scales
            rows_per_chunk = max(1, CHUNK_FLOATS // cols)
            for r0 in range(0, rows, rows_per_chunk):
                n = min(rows_per_chunk, rows - r0)
                w = buf[: n * cols]
                rng.standard_normal(dtype=np.float32, out=w)
                w *= np.float32(0.02)
                is_classifier = name == "wcls" or (name == "tok_embeddings" and shape.shared_classifier)
                if is_classifier and r0 == 0:
                    w[: 3 * cols] = 0.0  # tokens 0, 1, 2: logits exactly 0
                if f32:
                    f32.write(memoryview(w))
                if i8:
                    q, scale = quantize(w, shape.group_size)
                    i8.write(memoryview(q))
                    scales.append(scale)
            if i8:
                i8.write(np.concatenate(scales).tobytes())
        if f32 and shape.shared_classifier:
            write_fp32_tail(f32, shape)
    except BaseException:
        for d in dtypes:
            files[d].close()
            tmp[d].unlink(missing_ok=True)
        raise
    # On disk before the rename, and before the measurements: the kernel's
    # writeback of gigabytes would otherwise take CPU and memory bandwidth
    # from the first of them.
    for f in files.values():
        f.flush()
        os.fsync(f.fileno())
        f.close()
    for d in dtypes:
        size = tmp[d].stat().st_size
        if size != shape.file_bytes(d):
            raise RuntimeError(f"{tmp[d]}: wrote {size} bytes, expected {shape.file_bytes(d)}")
        os.replace(tmp[d], paths[d])


def write_fp32_tail(f, shape):
    f.write(np.ones(shape.dim, dtype="<f4").tobytes())  # rms_final
    real, imag = rope_tables(shape)
    f.write(real.tobytes())
    f.write(imag.tobytes())


# ----------------------------------------------------------------------------
# Writing the GGUF files
#
# A 7B model in fp32 is 27 GB, so the GGUF files are not quantized from
# float weights: their blocks are written directly, random. Speed does not
# depend on the values, only on the types and sizes, so the quantized values
# and the scale bytes inside a block (Q4_K's 6-bit scales and mins, Q6_K's
# int8 scales) are random bytes, but each block's float16 scale d (and Q4_K's
# dmin) is drawn from a small positive range: no NaN or infinity can arise,
# and the weights spread about as far as the fp32 files' (0.02; Q6_K's 0.3),
# so logits and llama.cpp's float16 KV cache stay far from overflow. Norm
# weights are 1.0, and the classifier rows of tokens 0, 1 and 2 are blocks of
# zeros (d = 0), so their logits are exactly 0 as in the checkpoints above
# (Llama 3's: the rows of its 256 control tokens, BOS and the
# end-of-generation ones among them, 128,000 to 128,255).
# The random bytes come from one 64 MiB pool per file, copied from a random
# offset for each chunk of rows: drawing 4 GB of fresh random numbers would
# take longer than the disk takes to write them.
# The tokenizer is the project's models/tokenizer.model (Llama 2's 32,000
# pieces), put in the file's metadata by export.py's code, so run and
# llama.cpp both take it from the file. The Llama 3 shapes' files carry
# Llama 3's instead: the tokenizer.* keys of models/llama3/llama3-vocab.gguf
# (export.py's vocabulary-only GGUF of Meta's tokenizer.json: pieces, types,
# merges, BOS and EOS, the chat template), copied byte for byte, and a
# rope_freqs.weight computed by export.py's llama3_rope_factors.

GGUF_ALIGNMENT = 32
SCALE_RANGE = {"Q8_0": (1e-4, 5e-4), "Q4_0": (2e-3, 6e-3), "Q4_K": (1e-4, 3e-4), "Q6_K": (1e-4, 3e-4)}
POOL_BYTES = 1 << 26
GGUF_CHUNK_BYTES = 1 << 24  # rows written at a time, about
TOKENIZER_MODEL = REPO / "models" / "tokenizer.model"
LLAMA3_VOCAB = REPO / "models" / "llama3" / "llama3-vocab.gguf"
GGUF_CONTROL = 3  # tokenizer.ggml.token_type of a control token (BOS, EOS, <|eot_id|>, ...)


def block_dtype(ggml_type):
    """A NumPy record of one block, with its float16 scale fields named and
    the rest as bytes."""
    fields = {"Q8_0": [("d", "<f2"), ("rest", "u1", 32)],
              "Q4_0": [("d", "<f2"), ("rest", "u1", 16)],
              "Q4_K": [("d", "<f2"), ("dmin", "<f2"), ("rest", "u1", 140)],
              "Q6_K": [("rest", "u1", 208), ("d", "<f2")]}[ggml_type]
    dt = np.dtype(fields)
    assert dt.itemsize == GGML_TYPES[ggml_type][2]
    return dt


def align(n):
    return (n + GGUF_ALIGNMENT - 1) // GGUF_ALIGNMENT * GGUF_ALIGNMENT


_tokenizer_kvs = {}


def tokenizer_kvs(shape, export):
    """A shape's tokenizer metadata, as encoded key/value pairs, and the ids
    of its classifier rows that are zero (see above)."""
    if shape.llama3:
        if "llama3" not in _tokenizer_kvs:
            sys.path.insert(0, str(REPO / "tests"))
            from gguf_read import GGUFFile  # the tests' GGUF reader, written from the specification
            del sys.path[0]
            vocab = GGUFFile(str(LLAMA3_VOCAB))
            kvs = [raw for key, raw in vocab.kv_bytes.items() if key.startswith("tokenizer.")]
            n = len(vocab.kv["tokenizer.ggml.tokens"])
            assert n == shape.vocab_size, f"{LLAMA3_VOCAB}: {n} pieces"
            types = vocab.kv["tokenizer.ggml.token_type"]
            _tokenizer_kvs["llama3"] = kvs, [i for i, t in enumerate(types) if t == GGUF_CONTROL]
        return _tokenizer_kvs["llama3"]
    if "llama2" not in _tokenizer_kvs:
        kvs, n = export.tokenizer_metadata(str(TOKENIZER_MODEL), shape.vocab_size)
        assert n == shape.vocab_size, f"{TOKENIZER_MODEL}: {n} pieces"
        _tokenizer_kvs["llama2"] = kvs, [0, 1, 2]
    return _tokenizer_kvs["llama2"]


def gguf_layout(shape, dtype):
    """The GGUF file of a shape and type, planned: (header bytes, padded to
    the alignment; [(tensor, offset in the data, bytes)]; the file's size).
    The header and metadata are export.py's (GGUF version 3)."""
    sys.path.insert(0, str(REPO))
    import export
    del sys.path[0]
    kv, S, U32, F32 = export.gguf_kv, export.GGUF_STRING, export.GGUF_UINT32, export.GGUF_FLOAT32
    kvs = [kv("general.architecture", S, "llama"),
           kv("general.name", S, f"run-bench random {shape.name} {dtype}"),
           kv("general.alignment", U32, GGUF_ALIGNMENT),
           kv("general.file_type", U32, GGUF_FILE_TYPES[dtype]),
           kv("general.quantization_version", U32, 2),
           kv("llama.vocab_size", U32, shape.vocab_size),
           kv("llama.context_length", U32, shape.seq_len),
           kv("llama.embedding_length", U32, shape.dim),
           kv("llama.block_count", U32, shape.n_layers),
           kv("llama.feed_forward_length", U32, shape.hidden_dim),
           kv("llama.rope.dimension_count", U32, shape.head_size),
           kv("llama.attention.head_count", U32, shape.n_heads),
           kv("llama.attention.head_count_kv", U32, shape.n_kv_heads),
           kv("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
           kv("llama.rope.freq_base", F32, shape.rope_theta)] + tokenizer_kvs(shape, export)[0]
    tensors, infos, offset = [], [], 0
    for t in shape.gguf_tensors(dtype):
        name, _, _, rows, cols, ggml_type = t
        type_id, values, size = GGML_TYPES[ggml_type]
        assert cols % values == 0, f"{shape.name}: {name} rows of {cols} are not whole {ggml_type} blocks"
        nbytes = rows * (cols // values) * size
        ne = (cols,) if rows == 1 else (cols, rows)  # ne[0]: the row length
        infos.append(export.gguf_string(name) + struct.pack(f"<I{len(ne)}QIQ", len(ne), *ne, type_id, offset))
        tensors.append((t, offset, nbytes))
        offset = align(offset + nbytes)
    header = b"".join([b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(kvs))] + kvs + infos)
    header += bytes(align(len(header)) - len(header))
    return header, tensors, len(header) + offset


def write_gguf(shape, dtype):
    """Writes the GGUF file of a shape and type, to a temporary name renamed
    when complete (as write_checkpoints)."""
    header, tensors, total = gguf_layout(shape, dtype)
    path = checkpoint_path(shape, dtype)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    rng = np.random.default_rng([SEED] + list(f"{shape.name} {dtype}".encode()))
    pool = rng.integers(0, 256, POOL_BYTES, dtype=np.uint8)
    classifier = "tok_embeddings" if shape.shared_classifier else "wcls"
    sys.path.insert(0, str(REPO))
    import export
    del sys.path[0]
    zero_rows = tokenizer_kvs(shape, export)[1]
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            for (name, matrix, _, rows, cols, ggml_type), offset, nbytes in tensors:
                assert f.tell() == len(header) + offset
                if name == "rope_freqs.weight":
                    f.write(export.llama3_rope_factors(shape.head_size, shape.rope_theta, shape.llama3_rope_scaling,
                                                       shape.name).astype("<f4").tobytes())
                elif ggml_type == "F32":
                    f.write(np.ones(rows * cols, dtype="<f4").tobytes())  # a norm
                else:
                    write_random_blocks(f, rng, pool, rows, cols, ggml_type, zero_rows if matrix == classifier else [])
                f.write(bytes(align(f.tell()) - f.tell()))
            f.flush()
            os.fsync(f.fileno())  # see write_checkpoints
        size = tmp.stat().st_size
        if size != total:
            raise RuntimeError(f"{tmp}: wrote {size} bytes, expected {total}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_random_blocks(f, rng, pool, rows, cols, ggml_type, zero_rows):
    """A matrix of random blocks (see above), the rows of the ids in zero_rows zero."""
    _, values, size = GGML_TYPES[ggml_type]
    dt = block_dtype(ggml_type)
    lo, hi = SCALE_RANGE[ggml_type]
    row_bytes = cols // values * size
    rows_per_chunk = max(1, GGUF_CHUNK_BYTES // row_bytes)
    for r0 in range(0, rows, rows_per_chunk):
        n = min(rows_per_chunk, rows - r0) * row_bytes
        start = int(rng.integers(0, POOL_BYTES - n + 1))
        chunk = pool[start:start + n].copy()
        blocks = chunk.view(dt)
        for scale in ("d", "dmin") if ggml_type == "Q4_K" else ("d",):
            blocks[scale] = rng.uniform(lo, hi, len(blocks)).astype(np.float16)
        r1 = r0 + n // row_bytes
        for r in (r for r in zero_rows if r0 <= r < r1):
            chunk[(r - r0) * row_bytes:(r - r0 + 1) * row_bytes] = 0
        f.write(memoryview(chunk))


def ensure_checkpoints():
    """Writes whatever checkpoint or GGUF file is missing or has the wrong
    size, in a child process (bench.py --write-checkpoints). Returns the
    seconds spent."""
    start = time.monotonic()
    subprocess.run([sys.executable, __file__, "--write-checkpoints"], check=True)
    return time.monotonic() - start


def write_missing_checkpoints():
    global np
    import numpy as np

    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in list(directory.glob("*.bin.*.tmp")) + list(directory.glob("*.gguf.*.tmp")):  # from an interrupted bench
        if not process_alive(int(leftover.name.split(".")[-2])):
            leftover.unlink(missing_ok=True)
    rows = selected_rows()
    for shape in SHAPES:
        types = [d for s, d in rows if s == shape]
        legacy = [d for d in types if d in LEGACY_TYPES]
        missing = [d for d in legacy if not has_right_size(checkpoint_path(shape, d), shape.file_bytes(d))]
        if missing:
            total = sum(shape.file_bytes(d) for d in missing) / 1e6
            progress(f"writing {shape.name} {' and '.join(missing)} ({total:.0f} MB) to {directory}")
            t0 = time.monotonic()
            write_checkpoints(shape, missing)
            progress(f"  done in {time.monotonic() - t0:.1f} s")
        for d in (d for d in types if d in GGUF_TYPES):
            total = gguf_layout(shape, d)[2]
            if not has_right_size(checkpoint_path(shape, d), total):
                progress(f"writing {shape.name} {d} GGUF ({total / 1e6:.0f} MB) to {directory}")
                t0 = time.monotonic()
                write_gguf(shape, d)
                progress(f"  done in {time.monotonic() - t0:.1f} s")


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def has_right_size(path, size):
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def warm_page_cache(path):
    """Reads a file once, so the timed runs find it in the page cache."""
    chunk = bytearray(1 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(chunk):
            pass


def clean_cache():
    """`make bench-clean`: deletes the cache directory. Only the files this
    bench writes are deleted, then the directory if that left it empty, so a
    mistaken BENCH_CACHE cannot take anything else with it."""
    directory = cache_dir()
    if not directory.is_dir():
        print(f"bench: no cache at {directory}")
        return
    names = {checkpoint_path(s, d).name for s in SHAPES for d in possible_types(s)}
    freed = 0
    for path in directory.iterdir():
        ours = re.fullmatch(r"(.+\.(?:bin|gguf))(\.\d+\.tmp)?", path.name)  # a model file, or one being written
        if ours and ours.group(1) in names:
            freed += path.stat().st_size
            path.unlink()
    try:
        directory.rmdir()
        print(f"bench: deleted {directory} ({freed / 1e9:.2f} GB)")
    except OSError:
        print(f"bench: deleted the checkpoints in {directory} ({freed / 1e9:.2f} GB); "
              f"other files there were left alone")


# ----------------------------------------------------------------------------
# Running a program, and watching the rest of the machine meanwhile
#
# Another process on the CPUs spoils a timing, and with 2 threads on 2 cores
# badly: a thread that loses its core stalls every barrier of the other, so a
# little load can slow a run many times over. Each run is therefore timed
# together with the CPU time the rest of the machine used meanwhile (from
# /proc/stat, less the run's own and this script's), and a run during which
# others used a noticeable share of a CPU is "disturbed": not counted, run again.

CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds():
    """CPU seconds all CPUs have spent busy since boot (stolen by the
    hypervisor included), from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def disturbed(other_cpu, wall):
    """Whether others used enough CPU during a run to spoil it. The allowance
    covers /proc/stat's tick granularity and the background of a quiet
    machine (kernel threads, a shell: a few % of one CPU)."""
    return other_cpu > 0.05 + 0.10 * wall


@dataclass
class Child:
    code: int          # exit status, or -signal
    output: str        # what it printed on the captured stream
    wall: float        # seconds, start to exit
    usage: object      # its own resource usage, from wait4
    other_cpu: float   # CPU seconds the rest of the machine used meanwhile
    killed: bool       # by the timeout

    @property
    def disturbed(self):
        return disturbed(self.other_cpu, self.wall)


def run_child(args, capture, env=None, timeout=math.inf):
    """Runs args with one of its streams ("stdout" or "stderr") captured and
    the other discarded, in its own process group (killed whole after timeout
    seconds). wait4 gives the child's own rusage, peak RSS included, not that
    of every child this script ever had."""
    busy0, self0 = machine_busy_seconds(), os.times()
    start = time.monotonic()
    pipe, null = subprocess.PIPE, subprocess.DEVNULL
    proc = subprocess.Popen(args, stdout=pipe if capture == "stdout" else null,
                            stderr=pipe if capture == "stderr" else null, env=env, cwd=REPO,
                            start_new_session=True)
    stream = proc.stdout if capture == "stdout" else proc.stderr
    killer = None
    if math.isfinite(timeout):
        killer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
        killer.start()
    try:
        output = stream.read().decode(errors="replace")
        stream.close()
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:
        # Interrupted (Ctrl-C, or SIGTERM: see main): the child is in its own
        # session, out of the terminal's reach, so it goes down here.
        os.killpg(proc.pid, signal.SIGKILL)
        os.wait4(proc.pid, 0)
        raise
    finally:
        if killer:
            killer.cancel()
    proc.returncode = code = os.waitstatus_to_exitcode(status)  # so Popen does not wait again
    wall = time.monotonic() - start
    busy1, self1 = machine_busy_seconds(), os.times()
    other = 0.0
    if busy0 is not None and busy1 is not None:
        mine = (self1.user - self0.user) + (self1.system - self0.system)
        other = max(0.0, busy1 - busy0 - usage.ru_utime - usage.ru_stime - mine)
    return Child(code, output, wall, usage, other, code == -signal.SIGKILL)


# ----------------------------------------------------------------------------
# Memory bandwidth: bench/bandwidth.c


def build_probe(workdir, source):
    """Compiles one of the probes (bench/bandwidth.c, bench/peak.c) for this
    CPU into workdir; returns the program's path."""
    exe = Path(workdir) / source.stem
    cc = os.environ.get("CC") or "cc"
    subprocess.run([cc, "-O3", "-march=native", "-fopenmp", "-o", str(exe), str(source)], check=True)
    return exe


def measure_bandwidth(exe):
    """Runs the probe. Returns ({threads: GB/s}, note): up to 3 tries, until
    one is not disturbed; if none is, the best figures of all and a note
    saying so."""
    best = {}
    for attempt in range(3):
        child = run_child([str(exe)], "stdout")
        found = {int(t): float(g) for t, g in re.findall(r"bandwidth: (\d+) threads ([\d.]+) GB/s", child.output)}
        if child.code != 0 or set(found) != set(THREAD_COUNTS):
            raise RuntimeError(f"bench/bandwidth.c: exit status {child.code}, printed:\n{child.output}")
        if not child.disturbed:
            return found, ""
        progress(f"bandwidth probe disturbed (other processes used {child.other_cpu:.1f} CPU-s); again")
        best = {t: max(g, best.get(t, 0.0)) for t, g in found.items()}
    return best, "disturbed by other processes in all 3 tries: the best figures"


def bandwidth_now(exe):
    """A quick 2-thread probe (256 MiB, best of 3 passes, ~0.2 s), run just
    before each 2-thread decode run: this VM's bandwidth drifts by up to 2x
    within minutes, so the probes before and after all the runs may not be
    what a run had. Returns GB/s, or None if the probe failed."""
    child = run_child([str(exe), "256", "3", "2"], "stdout")
    m = re.search(r"bandwidth: 2 threads ([\d.]+) GB/s", child.output)
    return float(m.group(1)) if child.code == 0 and m else None


# ----------------------------------------------------------------------------
# Arithmetic peak: bench/peak.c


def measure_peak(exe):
    """Runs the probe (about 2 s). Returns ({(kind, threads): G operations a
    second} for kind "int8" and "f32", without the kinds this CPU lacks, the
    instructions measured, note): up to 3 tries, until one is not disturbed;
    if none is, the best figures of all and a note saying so."""
    best, names = {}, {}
    for attempt in range(3):
        child = run_child([str(exe)], "stdout")
        if child.code != 0:
            raise RuntimeError(f"bench/peak.c: exit status {child.code}, printed:\n{child.output}")
        for kind, t, g, name in re.findall(r"peak: (int8|f32) (\d+) threads ([\d.]+) G\w+/s \((.*)\)", child.output):
            best[(kind, int(t))] = max(float(g), best.get((kind, int(t)), 0.0))
            names[kind] = name
        if not child.disturbed:
            return best, names, ""
        progress(f"arithmetic peak probe disturbed (other processes used {child.other_cpu:.1f} CPU-s); again")
    return best, names, "disturbed by other processes in all 3 tries: the best figures"


# ----------------------------------------------------------------------------
# Sampling's cost: bench/sampling.c
#
# The decode runs are greedy (-t 0: one pass over the logits for their
# largest), but run samples by default (-t 1 -p 0.9), and top-p over Llama
# 3's 128,256 logits could cost a real share of a small model's token. So
# sampling.c times run's own sample() over that many logits, on one thread,
# and the table's footer gives it as a share of the Llama 3 rows' token time.

def start_sampling_build(workdir):
    """Starts compiling bench/sampling.c (run.c included whole) as the
    Makefile compiles run: portable, -O3, OpenMP. Returns (process, path)."""
    exe = Path(workdir) / "sampling"
    cc = os.environ.get("CC") or "cc"
    args = [cc, "-O3", "-fopenmp", "-Wno-unused-function", "-o", str(exe), str(SAMPLING_SOURCE), "-lm"]
    return subprocess.Popen(args, cwd=REPO), exe


@dataclass
class Sampling:
    vocab_size: int
    reps: int
    sds: list       # the logits' standard deviations
    topp: list      # median microseconds of sample() with -t 1 -p 0.9, per sd
    greedy: list    # -t 0
    whole: list     # -t 1 -p 1
    nucleus: list   # tokens that top-p 0.9 keeps
    note: str = ""


SAMPLING_RE = re.compile(r"sampling: sd ([\d.]+): topp ([\d.]+) us \(min [\d.]+\), greedy ([\d.]+) us, "
                         r"all ([\d.]+) us, nucleus (\d+) tokens")


def measure_sampling(build, vocab_size, reps=301):
    """Waits for the build, then runs it over vocab_size logits (up to 3
    tries, until one is not disturbed; if none is, the least of each figure
    over the tries, and a note saying so). Returns a Sampling, or None with
    a message if it could not be built or run."""
    proc, exe = build
    if proc.wait() != 0:
        progress("bench: bench/sampling.c did not compile: no sampling figures")
        return None
    tries = []
    for attempt in range(3):
        child = run_child([str(exe), str(vocab_size), str(reps)], "stdout",
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
        found = SAMPLING_RE.findall(child.output)
        if child.code != 0 or not found:
            progress(f"bench: bench/sampling.c: exit status {child.code}, printed:\n{child.output}")
            return None
        cols = list(zip(*found))
        tries.append(Sampling(vocab_size, reps, *([float(x) for x in col] for col in cols[:4]),
                              [int(x) for x in cols[4]]))
        if not child.disturbed:
            return tries[-1]
        progress(f"sampling measurement disturbed (other processes used {child.other_cpu:.1f} CPU-s); again")
    least = lambda name: [min(col) for col in zip(*(getattr(t, name) for t in tries))]
    return Sampling(vocab_size, reps, tries[0].sds, least("topp"), least("greedy"), least("whole"),
                    tries[0].nucleus, "disturbed by other processes in all 3 tries: the least of each figure")


# ----------------------------------------------------------------------------
# The prompts: 256 tokens, and the longer ones of the depth runs


def vocabulary(shape):
    """The tokenizer a shape's files carry: tokenizer.bin holds Llama 2's
    (as do its GGUF files), models/llama3/llama3-vocab.gguf Llama 3's."""
    return LLAMA3_VOCAB if shape.llama3 else TOKENIZER


def tokenize(text, vocab):
    """Token ids of text, BOS first, from `./run -m tokenize` with the
    vocabulary of the file vocab (a tokenizer.bin, or a GGUF file's)."""
    out = subprocess.run([str(run_binary), "-m", "tokenize", "-z", str(vocab), "-i", text],
                         check=True, capture_output=True, text=True).stdout
    return out.split()


# Plain words, nearly all one token each with their leading space.
PROMPT_WORDS = (
    "Once upon a time there was a little girl named Lily who lived in a small house near "
    "the big forest with her mother and her father and her dog Max . Every day she went "
    "out to play in the garden and look at the flowers and the birds and the trees . One "
    "day she saw a red ball under a tree and she ran to get it , but the ball rolled down "
    "the hill and into the river . Lily was sad , so her friend Tom came to help her and "
    "they found a long stick to bring the ball back to the side of the water ."
).split()


def find_prompt(n_tokens, vocab):
    """A text that tokenizes to exactly n_tokens ids with BOS in the
    vocabulary of the file vocab (see vocabulary()): the longest run of
    words that fits, padded with " a" one token at a time (one token in
    Llama 2's SentencePiece vocabulary and in Llama 3's BPE alike). (The
    runs check the count they were given.)"""
    words = (PROMPT_WORDS * (n_tokens // len(PROMPT_WORDS) + 2))
    count = lambda text: len(tokenize(text, vocab))
    lo, hi = 1, len(words)  # count(words[:lo]) <= target < count(words[:hi])
    assert count(" ".join(words[:hi])) > n_tokens
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count(" ".join(words[:mid])) <= n_tokens:
            lo = mid
        else:
            hi = mid
    text = " ".join(words[:lo])
    n = count(text)
    while n < n_tokens:
        text += " a"
        n = count(text)
    if n != n_tokens:
        raise RuntimeError(f"could not make a {n_tokens}-token prompt (got {n})")
    return text


# ----------------------------------------------------------------------------
# Running ./run


@dataclass
class RunResult:
    ok: bool
    wall: float                   # seconds, process start to exit
    maxrss_kib: int = 0           # the child's own peak RSS
    stats: tuple = None           # STATS_RE's groups, converted
    error: str = ""               # why it failed: "exit status 1", "killed after 60 s", "no stats line"
    stderr: str = ""              # what run printed there, kept when it failed
    killed: bool = False          # by the timeout
    other_cpu: float = 0.0        # CPU seconds other processes used meanwhile
    disturbed: bool = False       # so much that the run's speed does not count
    bandwidth: float = None       # 2-thread decode runs: GB/s of a probe just before (bandwidth_now)
    tok_s: float = None           # the cell's figure: the generated rate of a decode or depth run, the prompt rate of a prompt run
    build: str = ""               # llama-bench's runs: its build, as it reports it

    def message(self):
        """One line on a failure: why, and the program's own last word on stderr."""
        said = [l for l in self.stderr.splitlines() if l.strip() and not l.startswith("{")]
        return self.error + (f": {said[-1].strip()}" if said else "")


def run_once(args, threads, timeout, kind):
    """Runs ./run with OMP_NUM_THREADS=threads, stdout discarded, and returns
    its stats line, wall time, peak RSS, and whether it was disturbed."""
    child = run_child(args, "stderr", env=dict(os.environ, OMP_NUM_THREADS=str(threads)), timeout=timeout)
    result = RunResult(False, child.wall, child.usage.ru_maxrss, other_cpu=child.other_cpu,
                       disturbed=child.disturbed, killed=child.killed)
    m = STATS_RE.search(child.output)
    if child.code != 0 or not m:
        result.error = (f"killed after {timeout:.0f} s" if child.killed else
                        f"exit status {child.code}" if child.code else "no stats line on stderr")
        result.stderr = child.output
        return result
    g = m.groups()
    result.ok, result.stats = True, (int(g[0]), float(g[1]), float(g[2]), int(g[3]), float(g[4]), float(g[5]))
    result.tok_s = result.stats[2] if kind == "prompt" else result.stats[5]
    return result


# ----------------------------------------------------------------------------
# llama.cpp's llama-bench, when LLAMA_CPP_BENCH names one
#
# Each of its runs is one llama-bench process measuring one test once
# (-r 1), after llama-bench's own warm-up (a whole prompt before a prompt
# test, one token before a generation test; it also pages the memory-mapped
# model in), with its test printed as JSON on stderr (-o none -oe jsonl).
# The bench repeats and times these processes as it does ./run's, so both
# get the same medians and the same watch on the rest of the machine.
# The tests: decode tg32 (32 tokens from an empty context), prompt pp256,
# and depth "tg32 @ d<depth>" (-d: 32 tokens after an untimed prompt of
# the depth's length), with llama-bench's defaults otherwise (memory-mapped
# model, batch 2048, float16 KV cache).

LLAMA_BENCH = os.environ.get("LLAMA_CPP_BENCH") or None
# More of llama-bench's options for every run (e.g. "--mmap 0"), shell-quoted.
LLAMA_BENCH_ARGS = shlex.split(os.environ.get("LLAMA_CPP_BENCH_ARGS") or "")
LLAMA_GEN = 32  # llama-bench's -n: tokens generated by decode and depth tests


def llama_bench_once(args, threads, timeout):
    """Runs llama-bench once and returns its figure as a RunResult."""
    child = run_child(args, "stderr", env=dict(os.environ, OMP_NUM_THREADS=str(threads)), timeout=timeout)
    result = RunResult(False, child.wall, child.usage.ru_maxrss, other_cpu=child.other_cpu,
                       disturbed=child.disturbed, killed=child.killed)
    tests = []
    for line in child.output.splitlines():
        if line.startswith("{"):
            try:
                tests.append(json.loads(line))
            except ValueError:
                pass
    if child.code != 0 or len(tests) != 1 or not tests[0].get("avg_ts"):
        result.error = (f"killed after {timeout:.0f} s" if child.killed else
                        f"exit status {child.code}" if child.code else f"{len(tests)} test results on stderr")
        result.stderr = child.output
        return result
    result.ok, result.tok_s = True, float(tests[0]["avg_ts"])
    result.build = f"build {tests[0].get('build_number')}, commit {tests[0].get('build_commit')}"
    return result


def llama_bench_build(cells):
    """llama-bench's own word on its build (build_commit, build_number of
    its JSON), from the first run that gave it, or None."""
    for c in cells:
        for r in c.ok_runs():
            if r.build:
                return r.build
    return None


def parse_self_test():
    """The stats line is the interface with run.c: check the parser on the
    documented example before depending on it."""
    line = "run: prompt 256 tokens in 0.345 s (742.0 tok/s), generated 2 tokens in 0.012 s (166.7 tok/s)"
    g = STATS_RE.search("some text\n" + line + "\n").groups()
    assert g == ("256", "0.345", "742.0", "2", "0.012", "166.7"), g


# ----------------------------------------------------------------------------
# Planning the runs within the budget
#
# A cell is one number of the table: (shape, dtype, kind, threads, engine),
# kind being "decode", "prompt" or "depth", engine "run" or "llama.cpp".
# Each wants REPEATS undisturbed runs. The plan:
#   round 1: one run of every cell: decode cells first (they are short), then
#            prompt cells, then depth cells, small models first, and each
#            llama.cpp cell right after its twin of run's; a cell guessed to
#            take over SLOW_RUN seconds waits until the others are done, and
#            the waiting ones go cheapest first;
#   then:    passes over the cells that still want runs, one more run of each
#            cell per pass while its cost (its fastest run so far) fits in
#            what is left of the budget; a file's cells one after another (in
#            round 1's order), the file whose cells cost least first. (The
#            cache holds more than this machine's memory: a file that has left
#            the page cache is read from disk again, tens of seconds at 8B.)
# Before a cell's first run its time is guessed from the runs so far (see
# estimate()); a run that would not fit is skipped and the cell says so. So
# the cheap cells always get their runs, the slowest ones get fewer when time
# is short, and the footer lists them.
#
# A run during which other processes used the CPUs is "disturbed" (see
# disturbed()): its speed is not counted and it is run again, up to
# MAX_RETRIES extra times per cell, while the budget lasts.

MAX_RETRIES = 3
GRACE = 30  # seconds a run may go past the deadline before it is stopped
SLOW_RUN = 30  # seconds: round 1 runs cells guessed slower than this last
KINDS = ("decode", "prompt", "depth")
DEPTH_GEN = 32  # tokens generated after the depth runs' prompt


@dataclass
class Cell:
    shape: Shape
    dtype: str
    kind: str        # "decode", "prompt" or "depth"
    threads: int
    engine: str = "run"  # or "llama.cpp": llama-bench on the same GGUF file
    runs: list = field(default_factory=list)  # RunResult of each run
    skipped: str = ""                         # why it has no run at all

    def ok_runs(self):
        return [r for r in self.runs if r.ok]

    def good_runs(self):
        return [r for r in self.runs if r.ok and not r.disturbed]

    def counted_runs(self):
        """The runs the table's number comes from: the undisturbed ones, or,
        when every run was disturbed, all of them (the cell is then marked)."""
        return self.good_runs() or self.ok_runs()

    def failures(self):
        """Runs that failed on their own: a run killed for taking too long
        while other processes held the CPUs is only disturbed."""
        return [r for r in self.runs if not r.ok and not (r.disturbed and r.killed)]

    def wants_more(self):
        return bool(self.runs and not self.failures() and len(self.good_runs()) < REPEATS
                    and len(self.runs) < REPEATS + MAX_RETRIES)

    def cost(self):
        """Seconds another run will take: its fastest good run so far (or the
        disturbed run that was stopped, when there is none)."""
        return min(r.wall for r in (self.ok_runs() or self.runs))

    def rate(self):
        """Median tok/s of the counted runs."""
        rates = [r.tok_s for r in self.counted_runs()]
        return statistics.median(rates) if rates else None

    def share_of_bandwidth_alongside(self):
        """Median over the counted runs of the share of the bandwidth probed
        just before each run that its decode speed used, or None."""
        per_token = self.shape.bytes_read_per_token(self.dtype)
        shares = [r.tok_s * per_token / (r.bandwidth * 1e9) for r in self.counted_runs() if r.bandwidth]
        return statistics.median(shares) if shares else None

    def positions(self):
        """Tokens a run goes through: its prompt and what it generates
        (llama-bench: its warm-up too)."""
        s = self.shape
        if self.engine == "run":
            return {"decode": s.decode_steps, "prompt": PROMPT_STEPS, "depth": s.depth + DEPTH_GEN}[self.kind]
        return {"decode": 1 + LLAMA_GEN, "prompt": 2 * PROMPT_TOKENS, "depth": 1 + s.depth + LLAMA_GEN}[self.kind]

    def path(self):
        return checkpoint_path(self.shape, self.dtype)

    def args(self, prompts):
        """The command line of one run; prompts: {(vocabulary, tokens): text}."""
        path = str(self.path())
        if self.engine == "llama.cpp":
            tests = {"decode": ["-p", "0", "-n", str(LLAMA_GEN)], "prompt": ["-p", str(PROMPT_TOKENS), "-n", "0"],
                     "depth": ["-p", "0", "-n", str(LLAMA_GEN), "-d", str(self.shape.depth)]}[self.kind]
            return ([LLAMA_BENCH, "-m", path, "-t", str(self.threads), "-r", "1", "-o", "none", "-oe", "jsonl"]
                    + tests + LLAMA_BENCH_ARGS)
        # A GGUF file carries its vocabulary; llama2.c's checkpoints take tokenizer.bin.
        base = [str(run_binary), path, "-t", "0"] + (["-z", str(TOKENIZER)] if self.dtype in LEGACY_TYPES else [])
        if self.kind == "decode":
            # One word after BOS: BOS's embedding row is zero here (see above), and a
            # zero hidden state would make every logit 0 and greedy decoding pick <unk>
            # forever; after a real word, generation runs on real activations.
            return base + ["-i", "Once", "-n", str(self.shape.decode_steps)]
        if self.kind == "depth":
            return base + ["-n", str(self.shape.depth + DEPTH_GEN), "-i", prompts[vocabulary(self.shape), self.shape.depth]]
        return base + ["-n", str(PROMPT_STEPS), "-i", prompts[vocabulary(self.shape), PROMPT_TOKENS]]

    def label(self):
        return f"{self.shape.name} {self.dtype} {self.kind} {self.threads}T" + (" llama.cpp" if self.engine != "run" else "")


def estimate(cell, cells):
    """Guessed wall seconds of a cell's first run, or None without a basis.
    From the fastest run of the last cell run so far of the same engine,
    kind, threads and dtype (a smaller model; an undisturbed run if there
    is one), scaled by the weight bytes a token reads and by the positions
    a run goes through. Failing that, for
    run's prompt and depth cells: at worst the prompt goes at decode speed,
    one token at a time (a batched prompt is faster), so its positions at
    this model's decode rate, plus the load time seen in its decode run."""
    s = cell.shape
    alike = [c for c in cells if (c.engine, c.kind, c.threads, c.dtype) == (cell.engine, cell.kind, cell.threads, cell.dtype)]
    # Undisturbed runs if any; a disturbed one only overestimates.
    done = [c for c in alike if c.good_runs()] or [c for c in alike if c.ok_runs()]
    if done:
        c = done[-1]
        scale = (s.bytes_read_per_token(cell.dtype) * cell.positions()
                 / (c.shape.bytes_read_per_token(c.dtype) * c.positions()))
        return min(r.wall for r in c.counted_runs()) * scale
    if cell.engine != "run" or cell.kind == "decode":
        return None

    def fastest(kind):
        twins = [c for c in cells if c.engine == "run" and c.kind == kind and c.shape == s and c.dtype == cell.dtype]
        runs = [r for c in twins for r in c.ok_runs()]
        return min(runs, key=lambda r: r.wall) if runs else None

    decode, prompt = fastest("decode"), fastest("prompt")
    if cell.kind == "depth" and prompt and decode:
        # Attention over a long prompt costs more per token than over 256:
        # half as much again, about.
        return 1.5 * s.depth / prompt.stats[2] + DEPTH_GEN / decode.stats[5] + max(
            0.0, prompt.wall - prompt.stats[1] - prompt.stats[4])
    if not decode:
        return None
    return cell.positions() / decode.stats[5] + max(0.0, decode.wall - decode.stats[4] - decode.stats[1])


class Scheduler:
    def __init__(self, cells, deadline, prompts, probe):
        self.cells = cells
        self.probe = probe
        self.deadline = deadline
        self.prompts = prompts
        self.errors_seen = set()
        self.warm = set()
        self.early_stops = []  # labels of runs that generated fewer tokens than asked

    def left(self):
        return self.deadline - time.monotonic()

    def go(self):
        first_round = sorted(self.cells, key=lambda c: (KINDS.index(c.kind), SHAPES.index(c.shape)))
        # A run guessed to take more than SLOW_RUN seconds waits for the end
        # of round 1, so one slow cell cannot starve many quick ones; the
        # slow ones then go cheapest first.
        slow = []
        for cell in first_round:
            guess = estimate(cell, self.cells)
            if guess is not None and guess > SLOW_RUN:
                slow.append(cell)
                continue
            self.first_run(cell, guess)
        while slow:
            guesses = [(estimate(c, self.cells), i) for i, c in enumerate(slow)]
            _, i = min((g if g is not None else 0.0, i) for g, i in guesses)
            self.first_run(slow.pop(i), guesses[i][0])
        while True:
            todo = [c for c in self.cells if c.wants_more() and 1.2 * c.cost() < self.left()]
            if not todo:
                break
            file_cost = {}
            for c in todo:
                file_cost[c.path()] = file_cost.get(c.path(), 0.0) + c.cost()
            todo.sort(key=lambda c: (file_cost[c.path()], str(c.path()), KINDS.index(c.kind), c.threads,
                                     c.engine != "run"))
            for cell in todo:
                if 1.2 * cell.cost() < self.left():
                    # A run 5 times slower than the cell's best is disturbed, not informative.
                    self.run(cell, max(20.0, 5 * cell.cost()))

    def first_run(self, cell, guess):
        if self.left() <= 0 or (guess is not None and guess > self.left()):
            cell.skipped = (f"not run: about {guess:.0f} s, {max(0, self.left()):.0f} s of the budget left"
                            if guess is not None else "not run: the time budget was used up")
            progress(f"  {cell.label():<34}   skipped  ({cell.skipped})")
            return
        # Five times the guess is surely not a normal run; without a guess,
        # a run may take what is left of the budget.
        self.run(cell, max(60.0, 5 * guess) if guess else math.inf)

    def run(self, cell, timeout):
        path = checkpoint_path(cell.shape, cell.dtype)
        if path not in self.warm:
            warm_page_cache(path)
            self.warm.add(path)
        # No run goes on more than GRACE seconds past the deadline.
        budget_timeout = max(1.0, self.left() + GRACE)
        bandwidth = (bandwidth_now(self.probe) if cell.kind == "decode" and cell.threads == 2 and cell.engine == "run"
                     else None)
        if cell.engine == "run":
            r = run_once(cell.args(self.prompts), cell.threads, min(timeout, budget_timeout), cell.kind)
        else:
            r = llama_bench_once(cell.args(self.prompts), cell.threads, min(timeout, budget_timeout))
        r.bandwidth = bandwidth
        if r.killed and not r.disturbed and budget_timeout <= timeout:
            why = f"stopped after {r.wall:.0f} s: the time budget ran out"
            if not cell.ok_runs():
                cell.skipped = why
            progress(f"  {cell.label():<34}   stopped  ({why})")
            return
        cell.runs.append(r)
        note = f"; disturbed: other processes used {r.other_cpu:.2f} CPU-s" if r.disturbed else ""
        if r.ok:
            progress(f"  {cell.label():<34} {r.tok_s:9.1f} tok/s  "
                     f"({r.wall:.1f} s wall, {time.monotonic() - START:.0f} s elapsed{note})")
            if cell.engine == "run":
                self.check_counts(cell, r)
        else:
            progress(f"  {cell.label():<34}    FAILED  ({r.message()}{note})")
            if r.disturbed and r.killed:
                return  # not a failure of the program's: see Cell.failures()
            if r.stderr not in self.errors_seen:  # the same message for every cell would be noise
                self.errors_seen.add(r.stderr)
                who = "run's" if cell.engine == "run" else "llama-bench's"
                tail = r.stderr.rstrip().splitlines()[-20:]  # llama-bench logs much before an error
                progress(f"    {who} stderr:\n      " + "\n      ".join(tail))

    def check_counts(self, cell, r):
        """Warns when run was not given the whole prompt, or stopped generating
        early (its rate is then over fewer tokens). run may count the token
        sampled after the prompt's last position as generated, or not."""
        n_prompt, n_gen = r.stats[0], r.stats[3]
        # decode: BOS and "Once"
        want_prompt = {"decode": 2, "prompt": PROMPT_TOKENS, "depth": cell.shape.depth}[cell.kind]
        steps = cell.positions()
        if n_prompt != want_prompt or n_gen < steps - want_prompt:
            progress(f"    warning: {cell.label()}: prompt {n_prompt} and generated {n_gen} tokens; "
                     f"asked for {want_prompt} and {steps - want_prompt}")
            self.early_stops.append(cell.label())


# ----------------------------------------------------------------------------
# The table


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


def fmt_share(share):
    return f"{100 * share:.0f}%" if share else "-"


def fmt_rate(cell):
    """The median, marked * when from fewer than REPEATS good runs and ~ when
    from disturbed runs only; or FAIL, or skip."""
    if cell is None:
        return "-"  # not measured for this row
    rate = cell.rate()
    if rate is None:
        return "FAIL" if cell.failures() else "skip" if cell.skipped else "-"
    text = f"{rate:.1f}" if rate < 1000 else f"{rate:.0f}"
    if not cell.good_runs():
        return text + "~"
    return text + ("*" if len(cell.good_runs()) < REPEATS else "")


def describe_machine():
    """The CPU, its count and vector extensions, memory, and whether this is
    a virtual machine, from /proc: the figures belong to the machine."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
        with open("/proc/meminfo") as f:
            mem_kib = int(next(l for l in f if l.startswith("MemTotal:")).split()[1])
    except (OSError, StopIteration, ValueError):
        return f"machine: {os.cpu_count()} CPUs ({os.uname().machine})"
    flags = set(info.get("flags", "").split())
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    model = info.get("model name", os.uname().machine)
    family = f", family {info['cpu family']} model {info['model']}" if "cpu family" in info else ""
    vm = ", a virtual machine" if "hypervisor" in flags else ""
    return (f"machine: {model}{family}, {os.cpu_count()} CPUs, {simd}, {mem_kib / 2**20:.1f} GiB RAM{vm}; "
            f"Linux {os.uname().release}")


def describe_binary():
    """Which ./run this was: git commit of the tree it was built from
    (-dirty: with uncommitted changes) and when it was built."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(RUN.stat().st_mtime))
    return f"./run built {built}, source tree {commit}"


def prompt_share_of_peak(cell, shape, dtype, peaks):
    """A 2-thread prompt cell's speed as a share of the arithmetic peak of
    the instruction its kernels use: float32 FMA for fp32 files, the int8
    dot product for int8 and GGUF files. None if either is not measured."""
    peak = peaks.get(("f32" if dtype == "fp32" else "int8", 2))
    rate = cell.rate() if cell else None
    return rate * 2 * shape.multiply_adds_per_token() / (peak * 1e9) if rate and peak else None


def print_table(cells, rows, probes, binary, gen_seconds, cache_bytes, early_stops, rss_floor, sampling, peaks):
    peak_by_kind, peak_names, peak_notes = peaks
    bandwidth = {t: max(p[0][t] for p in probes) for t in THREAD_COUNTS}
    limit_gbs = bandwidth[2]
    by_key = {(c.shape.name, c.dtype, c.kind, c.threads, c.engine): c for c in cells}
    columns = [(k, t) for k in KINDS for t in THREAD_COUNTS if any((k, t) in s.cells for s, _ in rows)]
    engines = ("run", "llama.cpp") if LLAMA_BENCH else ("run",)
    header = (["model", "type", "file MB", "read MB/tok"] + [f"{k} {t}T" for k, t in columns] +
              ["peak RSS MB", "limit tok/s", "decode 2T % limit", "% alongside", "prompt 2T % peak"] +
              (["llama.cpp " + f"{k} {t}T" for k, t in columns] + ["llama.cpp prompt 2T % peak"] if LLAMA_BENCH else []))
    table = []
    for s, d in rows:
        mine = {e: [by_key.get((s.name, d, k, t, e)) for k, t in columns] for e in engines}
        # Peak memory of the decode and prompt runs: a depth run's KV cache is larger.
        rss = [r.maxrss_kib for c in mine["run"] if c and c.kind != "depth" for r in c.ok_runs()]
        per_token = s.bytes_read_per_token(d)
        limit = limit_gbs * 1e9 / per_token
        dec2 = by_key[(s.name, d, "decode", 2, "run")].rate()
        alongside = by_key[(s.name, d, "decode", 2, "run")].share_of_bandwidth_alongside()
        path = checkpoint_path(s, d)
        table.append([
            s.name, d, f"{path.stat().st_size / 1e6:.1f}" if path.exists() else "-", f"{per_token / 1e6:.1f}",
            *(fmt_rate(c) for c in mine["run"]),
            ("<=" if rss and max(rss) <= rss_floor else "") + (f"{max(rss) * 1024 / 1e6:.0f}" if rss else "-"),
            f"{limit:.1f}",
            f"{100 * dec2 / limit:.0f}%" if dec2 else "-",
            f"{100 * alongside:.0f}%" if alongside else "-",
            fmt_share(prompt_share_of_peak(by_key.get((s.name, d, "prompt", 2, "run")), s, d, peak_by_kind)),
            *(fmt_rate(c) for c in mine.get("llama.cpp", [])),
            *([fmt_share(prompt_share_of_peak(by_key.get((s.name, d, "prompt", 2, "llama.cpp")), s, d, peak_by_kind))]
              if LLAMA_BENCH else []),
        ])
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]

    def line(cols):
        return "| " + " | ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cols, widths))) + " |"

    print()
    print(describe_machine())
    print(binary)
    if LLAMA_BENCH:
        print(f"llama.cpp: {LLAMA_BENCH} ({llama_bench_build(cells) or 'no run succeeded'})")
    print(f"memory read bandwidth (bench/bandwidth.c, 1 GiB, best of 20 passes): "
          f"1 thread {bandwidth[1]:.1f} GB/s, 2 threads {bandwidth[2]:.1f} GB/s,")
    print("  the better of a probe before the runs ({:.1f}, {:.1f} GB/s) and one after them ({:.1f}, {:.1f} GB/s)"
          .format(probes[0][0][1], probes[0][0][2], probes[1][0][1], probes[1][0][2]))
    for when, (_, note) in zip(("before", "after"), probes):
        if note:
            print(f"  the probe {when} the runs was {note}")
    for kind, unit in (("int8", "GOP/s"), ("f32", "GFLOP/s")):
        if (kind, 1) in peak_by_kind:
            print(f"arithmetic peak, {kind} (bench/peak.c, {peak_names[kind]}, the better of before and after the runs): "
                  f"1 thread {peak_by_kind[(kind, 1)]:.0f} {unit}, 2 threads {peak_by_kind[(kind, 2)]:.0f} {unit}")
        else:
            print(f"arithmetic peak, {kind}: not measured (bench/peak.c knows no such instruction for this CPU)")
    for when, note in zip(("before", "after"), peak_notes):
        if note:
            print(f"  the arithmetic probe {when} the runs was {note}")
    print()
    print(line(header))
    print("|" + "|".join("-" * (w + 2) if i < 2 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|")
    for r in table:
        print(line(r))
    print()
    shapes = [s for s in SHAPES if any(s == shape for shape, _ in rows)]
    steps = ", ".join(f"{s.name} -n {s.decode_steps}" for s in shapes)
    depths = ", ".join(f"{s.name} {s.depth}" for s in shapes)
    print(f"decode, prompt, depth: tok/s, median of {REPEATS} runs; 1T, 2T: OMP_NUM_THREADS=1, 2; - : not measured.")
    print(f"decode: empty prompt, greedy ({steps}); prompt: {PROMPT_TOKENS} tokens (-n {PROMPT_STEPS}).")
    print(f"depth: the decode speed of {DEPTH_GEN} tokens after a prompt of {depths} tokens.")
    print("types: fp32 and int8 are llama2.c checkpoints (int8: its version 2 layout); Q8_0, Q4_0 and Q4_K_M are GGUF")
    print("  files of random blocks (Q4_K_M: llama.cpp's mixture, Q6_K for the classifier and for half the layers'")
    print("  attn_v and ffn_down, Q4_K for the rest).")
    if any(s.llama3 for s in shapes):
        print("L3-1B, L3-8B: Llama 3.2 1B's and Llama 3.1 8B's shapes, with Llama 3's vocabulary of 128,256 tokens")
        print("  (L3-1B's classifier is its token embedding: in Q4_K_M, Q6_K; L3-8B's is output.weight).")
    print("read MB/tok: every layer's matrices + classifier + norms, as stored (int8: values + float32 scales).")
    print(f"limit tok/s = {limit_gbs:.1f} GB/s (the 2-thread bandwidth) / read MB/tok. MB = 1e6 bytes; "
          f"peak RSS: the largest of the row's decode and prompt runs.")
    print("% alongside: decode 2T's bytes per second as a share of a 2-thread probe (256 MiB, best of 3 passes)")
    print("  run just before each run, the median over the runs: the same ratio, against the bandwidth of the moment.")
    print("prompt 2T % peak: prompt 2T tok/s x 2 x the multiply-adds of the matrix products per token (attention's")
    print("  left out) / the 2-thread arithmetic peak above: float32's for fp32 files, int8's for int8 and GGUF files.")
    if LLAMA_BENCH:
        print("llama.cpp: llama-bench on the same GGUF files, one test per process (-r 1), median of the processes:")
        print(f"  decode tg{LLAMA_GEN}, prompt pp{PROMPT_TOKENS}, depth tg{LLAMA_GEN} after -d of the depth above; "
              f"-t 1, 2 with OMP_NUM_THREADS alike" + (f"; and {shlex.join(LLAMA_BENCH_ARGS)}." if LLAMA_BENCH_ARGS
                                                          else "; its defaults otherwise (memory-mapped model)."))
    if sampling:
        print_sampling(sampling, [(s, d, by_key[(s.name, d, "decode", 2, "run")].rate()) for s, d in rows
                                  if s.vocab_size == sampling.vocab_size])
    if any(r[header.index("peak RSS MB")].startswith("<=") for r in table):
        print(f"<= peak RSS no larger than this script's own ({rss_floor * 1024 / 1e6:.0f} MB), "
              f"which a child's ru_maxrss includes: the true figure may be lower.")
    fewer = [c for c in cells if c.good_runs() and len(c.good_runs()) < REPEATS]
    if fewer:
        by_count = {}
        for c in fewer:
            by_count.setdefault(len(c.good_runs()), []).append(c.label())
        print(f"* median of fewer than {REPEATS} runs (time budget, or disturbed runs), in {len(fewer)} of "
              f"{len(cells)} cells: " + "; ".join(f"{n} run{'s' if n > 1 else ''}: {', '.join(labels)}"
                                                  for n, labels in sorted(by_count.items())))
    n_disturbed = sum(r.disturbed for c in cells for r in c.runs)
    if n_disturbed:
        print(f"{n_disturbed} runs were disturbed by other processes using the CPUs, and not counted.")
    only_disturbed = [c.label() for c in cells if c.ok_runs() and not c.good_runs()]
    if only_disturbed:
        print("~ every run disturbed by other processes, so this number is not reliable: " + ", ".join(only_disturbed))
    if early_stops:
        print("warning: generation stopped early in: " + ", ".join(sorted(set(early_stops))))
    for c in cells:
        if c.skipped:
            print(f"skip: {c.label()}: {c.skipped}")
    failed = {}
    for c in cells:
        for r in c.failures():
            failed.setdefault(r.message(), []).append(c.label())
    for why, labels in failed.items():
        print(f"FAIL ({len(labels)} runs: {', '.join(labels)}): {why}")
    total = time.monotonic() - START
    print(f"total bench wall time: {total // 60:.0f} min {total % 60:.0f} s "
          f"(writing model files: {gen_seconds:.0f} s); cache: {cache_dir()} ({cache_bytes / 1e9:.2f} GB)")


def slower_sampling(before, after):
    """One Sampling of two measurements: the slower figure of each, and a note
    with both of top-p's."""
    pick = lambda name: [max(a, b) for a, b in zip(getattr(before, name), getattr(after, name))]
    span = lambda m: f"{min(m.topp):.0f}-{max(m.topp):.0f}"
    note = "; ".join(n for n in (before.note and "before: " + before.note, after.note and "after: " + after.note) if n)
    note = (f"the slower of a measurement before the runs and one after them (-t 1 -p 0.9 {span(before)} "
            f"and {span(after)} us)" + (f"; {note}" if note else ""))
    return Sampling(before.vocab_size, before.reps, before.sds, pick("topp"), pick("greedy"), pick("whole"),
                    before.nucleus, note)


def print_sampling(sampling, rows):
    """The footer's lines on sampling's cost; rows: (shape, dtype, decode 2T tok/s or None)."""
    print(f"sampling over {sampling.vocab_size} logits (bench/sampling.c: run's sample() on one thread, "
          f"median of {sampling.reps} calls), us per token:")
    if sampling.note:
        print(f"  {sampling.note}")
    lines = [("logits' sd", [f"{sd:g}" for sd in sampling.sds]),
             ("top-p 0.9 keeps", [str(n) for n in sampling.nucleus]),
             ("-t 1 -p 0.9", [f"{us:.0f}" for us in sampling.topp]),
             ("-t 1 -p 1", [f"{us:.0f}" for us in sampling.whole]),
             ("-t 0 (greedy)", [f"{us:.0f}" for us in sampling.greedy])]
    width = max(len(v) for _, vs in lines for v in vs)
    for label, values in lines:
        print(f"  {label:<16}" + "".join(v.rjust(width + 2) for v in values))
    shares = [f"{s.name} {d} {100 * min(sampling.topp) * 1e-6 * rate:.1f}-{100 * max(sampling.topp) * 1e-6 * rate:.1f}%"
              for s, d, rate in rows if rate]
    if shares:
        print("  -t 1 -p 0.9 as a share of a decode 2T token (peaked to flat logits): " + ", ".join(shares))


# ----------------------------------------------------------------------------


START = time.monotonic()


def main():
    global run_binary
    if sys.argv[1:] == ["--clean"]:
        clean_cache()
        return 0
    if sys.argv[1:] == ["--write-checkpoints"]:
        write_missing_checkpoints()
        return 0
    if sys.argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    parse_self_test()
    # SIGTERM ends the bench as Ctrl-C does: its run stopped, its temporary directory removed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not RUN.exists():
        sys.exit(f"bench: {RUN} not found; `make bench` builds it")
    rows = selected_rows()
    if LLAMA_BENCH and not os.access(LLAMA_BENCH, os.X_OK):
        sys.exit(f"bench: LLAMA_CPP_BENCH={LLAMA_BENCH} is not an executable file")

    with tempfile.TemporaryDirectory(prefix="run-bench-") as tmp:
        # Every run uses one copy of ./run, so a rebuild while the bench runs
        # cannot mix two programs in one table.
        binary = describe_binary()
        run_binary = Path(tmp) / "run"
        shutil.copy2(RUN, run_binary)

        # Sampling's cost is measured when a row has Llama 3's vocabulary; its
        # program compiles (several seconds: run.c whole) while the files are checked.
        sampling_vocab = max((s.vocab_size for s, _ in rows if s.llama3), default=None)
        sampling_build = start_sampling_build(tmp) if sampling_vocab else None
        gen_seconds = ensure_checkpoints()
        # Sampling before the bandwidth probe: for a second or two after the
        # probe (1 GiB on 2 threads), this VM ran sample() 1.5 times slower.
        sampling = measure_sampling(sampling_build, sampling_vocab) if sampling_build else None
        if sampling:
            progress(f"sampling over {sampling.vocab_size} logits, -t 1 -p 0.9: "
                     + ", ".join(f"sd {sd:g} {us:.0f} us" for sd, us in zip(sampling.sds, sampling.topp)))
        rss_floor = run_child(["true"], "stdout").usage.ru_maxrss  # see the note at "np = None"
        # The bandwidth a VM gets can change while the bench runs: on the
        # 2-vCPU EPYC VM this was written on, 2 threads got 35-39 GB/s at
        # times and 63-68 at others (1 thread: 32-36), likely as the host
        # put the two vCPUs on one core complex, sharing its link to memory,
        # or on two. So the probe runs before and after the runs, and the
        # better figure is the limit.
        probe = build_probe(tmp, BANDWIDTH_SOURCE)
        probes = [measure_bandwidth(probe)]
        progress(f"bandwidth: 1 thread {probes[0][0][1]:.1f} GB/s, 2 threads {probes[0][0][2]:.1f} GB/s")
        peak_probe = build_probe(tmp, PEAK_SOURCE)
        peaks = [measure_peak(peak_probe)]
        progress("arithmetic peak, 2 threads: " + ", ".join(f"{k} {g:.0f} G/s" for (k, t), g in peaks[0][0].items() if t == 2))
        prompts = {(v, n): find_prompt(n, v) for v, n in sorted(
            {(vocabulary(s), n) for s, _ in rows for k, _ in s.cells for n in
             ([PROMPT_TOKENS] if k == "prompt" else [s.depth] if k == "depth" else [])})}

        cells = []
        for s, d in rows:
            for k, t in s.cells:
                cells.append(Cell(s, d, k, t))
                if LLAMA_BENCH and d in GGUF_TYPES:
                    cells.append(Cell(s, d, k, t, "llama.cpp"))
        # The deadline leaves time for the second probe and the table.
        scheduler = Scheduler(cells, START + BUDGET_SECONDS - 15, prompts, probe)
        scheduler.go()
        if sampling:  # again, as the bandwidth: what this VM gives a core drifts
            after = measure_sampling(sampling_build, sampling_vocab)
            sampling = slower_sampling(sampling, after) if after else sampling
        probes.append(measure_bandwidth(probe))
        peaks.append(measure_peak(peak_probe))

    peak_by_kind = {key: max(p[0].get(key, 0.0) for p in peaks) for key in peaks[0][0]}
    cache_bytes = sum(p.stat().st_size for p in cache_dir().iterdir() if p.suffix in (".bin", ".gguf"))
    print_table(cells, rows, probes, binary, gen_seconds, cache_bytes, scheduler.early_stops, rss_floor, sampling,
                (peak_by_kind, peaks[0][1], [p[2] for p in peaks]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
