#!/usr/bin/env python3
"""export.py: write the files run.c reads.

    /usr/bin/python3 export.py [OUT] --tokenizer tokenizer.model
        SentencePiece model -> llama2.c's tokenizer.bin (OUT, default tokenizer.bin)

    /usr/bin/python3 export.py OUT.gguf --tokenizer tokenizer.json [--name NAME]
        Llama 3's Hugging Face tokenizer -> a vocabulary-only GGUF (no tensors;
        the tokenizer keys and chat template, as llama.cpp's vocab_only loads them)

    /usr/bin/python3 export.py OUT.gguf --meta-llama DIR   [options]
    /usr/bin/python3 export.py OUT.gguf --hf DIR           [options]
    /usr/bin/python3 export.py OUT.gguf --llama2c FILE.bin [options]
        a Llama model -> a GGUF (version 3, little-endian) file of architecture
        "llama", with its vocabulary embedded, as llama.cpp loads it.
        options:
          --type f32|f16|q8_0|q4_0  how matrices are stored (default f32; norms
                                    are always F32; in q8_0/q4_0 a matrix whose
                                    rows are not a multiple of 32 long is F16)
          --tokenizer PATH          the tokenizer.model or tokenizer.json to embed
                                    (default: the first of the model's folder, then
                                    one folder up for --meta-llama/--hf, holding a
                                    tokenizer.model, else a tokenizer.json)
          --context N               llama.context_length (default: from the model)
          --name NAME               general.name (default: the folder's or file's name)

The tokenizer.model file is a serialized protocol buffer (SentencePiece's
ModelProto). It is read here directly, with a few lines of wire-format
decoding, so no sentencepiece package is needed.

tokenizer.bin layout (little-endian), as llama2.c defines it:
    uint32 max_token_length
    per token: float32 score, uint32 length, `length` bytes of UTF-8 text
with SentencePiece's space symbol U+2581 written as ' ', <s> as "\\n<s>\\n",
</s> as "\\n</s>\\n", and every other piece (<0xNN> byte pieces included) as is.

GGUF export: inputs
    --meta-llama DIR  params.json and consolidated.NN.pth (model-parallel shards,
                      merged here). Needs PyTorch to unpickle. torch 1.13 cannot
                      memory-map .pth files, so all shards are loaded at once:
                      that takes about the checkpoint's size in RAM (7B: 13.5 GB,
                      13B: 26 GB, 70B: 138 GB, all bf16), plus one merged tensor.
                      Each tensor is freed as soon as it has been written.
    --hf DIR          config.json and model*.safetensors (read here, memory-mapped:
                      F32, F16, BF16) or pytorch_model*.bin (PyTorch, loaded whole).
                      q_proj/k_proj rows are put back from Hugging Face's
                      rotate-half order into Meta's interleaved-pair order.
                      Llama 3.x folders (tokenizer.json, no tokenizer.model):
                      rope_scaling of type llama3 becomes rope_freqs.weight (one
                      F32 factor per rotated pair, dividing its frequency, as
                      llama.cpp's converter computes it); linear becomes
                      llama.rope.scaling.*; other kinds are refused. head_dim, if
                      given, must be hidden_size / num_attention_heads.
    --llama2c FILE    llama2.c checkpoints: the legacy layout, version 1 (fp32)
                      and version 2 (int8 with per-group scales, dequantized
                      here to float32 exactly as runq.c multiplies them out).

GGUF export: output
    Tensors are named and shaped as llama.cpp names them (token_embd.weight,
    blk.N.attn_q.weight, ..., output.weight). output.weight is left out when the
    classifier is tied to the token embedding (llama.cpp then reuses
    token_embd). With --type q8_0/q4_0 every matrix is quantized, token_embd and
    output included (as llama.cpp's converter does for q8_0), in blocks of 32
    along a row, by the definitions of llama.cpp's reference quantizers
    (quantize_row_q8_0_ref, quantize_row_q4_0_ref). The file is written tensor
    by tensor to OUT.tmpPID and renamed to OUT at the end; on any error, and on
    Ctrl-C, SIGTERM or SIGHUP, the temporary file is removed and one line is
    printed on stderr.

    A tokenizer.json (Llama 3's byte-level BPE) is written as llama.cpp's
    converter writes it: tokenizer.ggml.model "gpt2", pre "llama-bpe", tokens in
    id order (vocabulary, then added tokens), token types (NORMAL; added tokens
    CONTROL if special, else USER_DEFINED), merges as "left right" strings in rank
    order, bos/eos ids from tokenizer_config.json (then config.json), add_bos from
    the post-processor's template, and tokenizer_config.json's chat template. A
    tokenizer.json that is not BPE, whose pre-tokenizer is not Llama 3's regex, or
    whose merges are empty or name tokens outside the vocabulary, is refused.
    Not reproduced: the converter's decode(encode()) round trip of non-special
    added tokens (Llama 3 has none).
"""

import argparse
import glob
import json
import os
import signal
import struct
import sys

import numpy as np

_progress_line_open = False  # a progress bar without its newline is on stderr


def one_line(text):
    return " ".join(str(text).split())


def fail(message):
    """One line on stderr naming what was wrong, and a non-zero exit."""
    global _progress_line_open
    if _progress_line_open:
        sys.stderr.write("\n")
        _progress_line_open = False
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


def load_sentencepiece(path, normalizer=None):
    """Returns (pieces, bos_id, eos_id, unk_id); pieces is a list of
    (text, score, type). Field numbers are those of sentencepiece_model.proto:
    ModelProto.pieces = 1, ModelProto.trainer_spec = 2, .normalizer_spec = 3;
    SentencePiece.piece = 1, .score = 2, .type = 3;
    TrainerSpec.unk_id = 40, .bos_id = 41, .eos_id = 42;
    NormalizerSpec.name = 1, .add_dummy_prefix = 3, .remove_extra_whitespaces = 4.
    A dict given as normalizer gets the normalizer's name and its two flags."""
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as e:
        fail(f"cannot read tokenizer model {path}: {e.strerror}")
    pieces = []
    ids = {40: 0, 41: 1, 42: 2}  # SentencePiece's defaults
    flags = {"name": "", 3: True, 4: True}  # proto2 defaults: both flags on unless the model says otherwise
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
            elif field == 3 and wire == 2:
                for f2, w2, v2 in read_fields(value):
                    if f2 in (3, 4) and w2 == 0:
                        flags[f2] = bool(v2)
                    elif f2 == 1 and w2 == 2:
                        flags["name"] = v2.decode("utf-8")
    except (ValueError, UnicodeDecodeError) as e:
        fail(f"{path} is not a SentencePiece model: {e}")
    if len(pieces) < 3:
        fail(f"{path} holds {len(pieces)} pieces; not a SentencePiece model")
    if normalizer is not None:
        normalizer.update(name=flags["name"], add_dummy_prefix=flags[3], remove_extra_whitespaces=flags[4])
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
    renamed = False
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        renamed = True
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror}")
    finally:  # also when a signal or Ctrl-C ends the write
        if not renamed and os.path.exists(tmp):
            os.remove(tmp)


def export_tokenizer(model_path, out_path):
    normalizer = {}
    pieces, bos_id, eos_id, _ = load_sentencepiece(model_path, normalizer)
    if normalizer["remove_extra_whitespaces"] or not normalizer["add_dummy_prefix"]:
        print(f"export.py: warning: {model_path} has add_dummy_prefix {normalizer['add_dummy_prefix']}, "
              f"remove_extra_whitespaces {normalizer['remove_extra_whitespaces']}; tokenizer.bin cannot record them "
              "and run reads it with Llama 2's rule (True, False): export a GGUF to keep them", file=sys.stderr)
    write_atomically(out_path, tokenizer_bin_bytes(pieces, bos_id, eos_id))
    print(f"wrote {out_path}: {len(pieces)} tokens", file=sys.stderr)


# -----------------------------------------------------------------------------
# GGUF export

class ExportError(Exception):
    """Bad input: reported as one line on stderr, with exit status 1."""


# GGUF metadata value types (GGUF specification, gguf_metadata_value_type).
GGUF_UINT32, GGUF_INT32, GGUF_FLOAT32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY = 4, 5, 6, 7, 8, 9
GGUF_FORMATS = {GGUF_UINT32: "<I", GGUF_INT32: "<i", GGUF_FLOAT32: "<f", GGUF_BOOL: "<?"}
GGUF_DTYPES = {GGUF_UINT32: "<u4", GGUF_INT32: "<i4", GGUF_FLOAT32: "<f4"}

# ggml tensor types, and each one's (values per block, bytes per block).
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q8_0 = 0, 1, 2, 8
GGML_BLOCKS = {GGML_F32: (1, 4), GGML_F16: (1, 2), GGML_Q4_0: (32, 18), GGML_Q8_0: (32, 34)}
GGML_NAMES = {GGML_F32: "F32", GGML_F16: "F16", GGML_Q4_0: "Q4_0", GGML_Q8_0: "Q8_0"}

# --type -> (general.file_type as llama.cpp numbers it (LLAMA_FTYPE_*), type of the matrices)
OUTPUT_TYPES = {"f32": (0, GGML_F32), "f16": (1, GGML_F16), "q4_0": (2, GGML_Q4_0), "q8_0": (7, GGML_Q8_0)}

ALIGNMENT = 32
GGUF_VERSION = 3
QUANTIZATION_VERSION = 2  # general.quantization_version, as llama.cpp's converter writes it


def gguf_string(text):
    b = text.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, vtype, value, element_type=None):
    """One metadata key/value pair, encoded."""
    out = [gguf_string(key), struct.pack("<I", vtype)]
    if vtype == GGUF_STRING:
        out.append(gguf_string(value))
    elif vtype == GGUF_ARRAY:
        out.append(struct.pack("<IQ", element_type, len(value)))
        if element_type == GGUF_STRING:
            out.extend(gguf_string(v) for v in value)
        else:
            out.append(np.asarray(value, dtype=GGUF_DTYPES[element_type]).tobytes())
    else:
        out.append(struct.pack(GGUF_FORMATS[vtype], value))
    return b"".join(out)


def align(n):
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


# --- Quantization, following llama.cpp's reference quantizers (ggml-quants.c).
# Arithmetic is float32, as there; d is stored as float16 (round to nearest even).

def quantize_q8_0(x):
    """Q8_0: blocks of 32 values along a row; block = float16 d, 32 int8 q.
    d = max|x| / 127, q = roundf(x * (1/d)) (halves away from zero)."""
    b = x.reshape(-1, 32)
    amax = np.abs(b).max(axis=1)
    d = amax / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    v = (b * inv[:, None]).astype(np.float64)  # the float32 products, exactly
    q = np.sign(v) * np.floor(np.abs(v) + 0.5)  # roundf; exact in float64
    out = np.empty(len(b), dtype=np.dtype([("d", "<f2"), ("q", "i1", 32)]))
    out["d"] = d.astype(np.float16)
    out["q"] = q.astype(np.int8)
    return out.tobytes()


def quantize_q4_0(x):
    """Q4_0: blocks of 32; block = float16 d, 16 bytes. d = m / -8 where m is the
    value of largest magnitude (the first such, sign kept); q = min(15,
    trunc(x * (1/d) + 8.5)); byte j holds q[j] (low nibble) and q[j+16] (high)."""
    b = x.reshape(-1, 32)
    a = np.abs(b)
    first = np.argmax(a, axis=1)
    m = b[np.arange(len(b)), first]
    m = np.where(a.max(axis=1) > 0, m, np.float32(0))  # an all-zero block keeps max = +0
    d = m / np.float32(-8)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    v = b * inv[:, None] + np.float32(8.5)
    q = np.minimum(15, v.astype(np.int32)).astype(np.uint8)  # astype truncates toward zero
    out = np.empty(len(b), dtype=np.dtype([("d", "<f2"), ("qs", "u1", 16)]))
    out["d"] = d.astype(np.float16)
    out["qs"] = q[:, :16] | (q[:, 16:] << 4)
    return out.tobytes()


def encode(x, ggml_type):
    """float32 values (whole rows) -> the bytes GGUF stores for them."""
    if ggml_type == GGML_F32:
        return x.astype("<f4", copy=False).tobytes()
    if ggml_type == GGML_F16:
        return x.astype("<f2").tobytes()
    if ggml_type == GGML_Q8_0:
        return quantize_q8_0(x)
    return quantize_q4_0(x)


def storage_type(shape, matrix_type):
    """1-D tensors (norms) stay F32; a matrix whose rows can't be cut in blocks
    of 32 is stored F16 instead of a quantized type."""
    if len(shape) == 1 or matrix_type == GGML_F32:
        return GGML_F32
    block, _ = GGML_BLOCKS[matrix_type]
    return matrix_type if shape[-1] % block == 0 else GGML_F16


def tensor_nbytes(shape, ggml_type):
    block, size = GGML_BLOCKS[ggml_type]
    return int(np.prod(shape, dtype=np.int64)) // block * size


# --- The model: configuration and tensors, whatever the source.

class Model:
    """cfg: dict with dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_size,
    vocab_size, context, norm_eps, rope_theta. tensors: GGUF name -> (shape,
    loader, label), where loader() returns the values (any float dtype) and
    label names the source tensor in messages. tied: no output.weight.
    rope_freqs: Llama 3's per-pair RoPE factors (rope_freqs.weight), or None.
    kvs: further encoded llama.* keys (RoPE scaling, key/value length).
    config: config.json's values, for the tokenizer's special token ids."""

    def __init__(self, cfg, tensors, tied, name, tokenizer_dirs):
        self.cfg, self.tensors, self.tied, self.name = cfg, tensors, tied, name
        self.tokenizer_dirs = tokenizer_dirs
        self.rope_freqs, self.kvs, self.config = None, [], None


def layer_names(i):
    return [f"blk.{i}.attn_norm.weight", f"blk.{i}.attn_q.weight", f"blk.{i}.attn_k.weight",
            f"blk.{i}.attn_v.weight", f"blk.{i}.attn_output.weight", f"blk.{i}.ffn_norm.weight",
            f"blk.{i}.ffn_gate.weight", f"blk.{i}.ffn_down.weight", f"blk.{i}.ffn_up.weight"]


def expected_shapes(cfg, tied):
    """GGUF name -> numpy shape (rows, cols), in the order they are written."""
    dim, hidden, hs = cfg["dim"], cfg["hidden_dim"], cfg["head_size"]
    q, kv, vocab = cfg["n_heads"] * hs, cfg["n_kv_heads"] * hs, cfg["vocab_size"]
    shapes = {"token_embd.weight": (vocab, dim)}
    for i in range(cfg["n_layers"]):
        for name, shape in zip(layer_names(i), [(dim,), (q, dim), (kv, dim), (kv, dim), (dim, q), (dim,),
                                                (hidden, dim), (dim, hidden), (hidden, dim)]):
            shapes[name] = shape
    shapes["output_norm.weight"] = (dim,)
    if not tied:
        shapes["output.weight"] = (vocab, dim)
    return shapes


def check_config(cfg, where):
    for key in ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "head_size", "vocab_size", "context"):
        v = cfg.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0 or v >= 1 << 32:
            raise ExportError(f"{where}: {key} = {v!r}, expected a positive integer")
    if cfg["n_heads"] % cfg["n_kv_heads"]:
        raise ExportError(f"{where}: n_heads {cfg['n_heads']} is not a multiple of n_kv_heads {cfg['n_kv_heads']}")
    if cfg["head_size"] % 2:
        raise ExportError(f"{where}: head size {cfg['head_size']} is odd; RoPE rotates pairs")
    for key in ("norm_eps", "rope_theta"):
        v = cfg.get(key)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not v > 0:
            raise ExportError(f"{where}: {key} = {v!r}, expected a positive number")


def int_field(d, key, where, default=None):
    v = d.get(key, default)
    if v is None:
        raise ExportError(f"{where} has no {key}")
    if not isinstance(v, int) or isinstance(v, bool):
        raise ExportError(f"{where}: {key} = {v!r}, expected an integer")
    return v


def read_json(path):
    try:
        with open(path, "rb") as f:
            value = json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise ExportError(f"cannot read {path}: {e.strerror}")
    except (ValueError, UnicodeDecodeError) as e:
        raise ExportError(f"{path} is not valid JSON: {one_line(e)}")
    if not isinstance(value, dict):
        raise ExportError(f"{path} does not hold a JSON object")
    return value


def require_dir(folder, flag):
    if not os.path.exists(folder):
        raise ExportError(f"{flag} {folder}: no such folder")
    if not os.path.isdir(folder):
        raise ExportError(f"{flag} {folder}: not a folder")


def folder_name(path):
    return os.path.basename(os.path.normpath(os.path.abspath(path)))


# --- PyTorch files (Meta's .pth, Hugging Face's pytorch_model*.bin)

def import_torch():
    try:
        import torch
    except ImportError:
        raise ExportError("reading .pth/.bin checkpoints needs PyTorch (Debian: apt-get install python3-torch)")
    return torch


def torch_load(path):
    torch = import_torch()
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except TypeError:  # torch older than 1.13 has no weights_only
            state = torch.load(path, map_location="cpu")
    except Exception as e:
        raise ExportError(f"cannot load {path}: {one_line(e)}")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{path} does not hold a state dict of tensors")
    return state


def torch_to_numpy(t):
    torch = import_torch()
    if t.dtype not in (torch.float32, torch.float16):
        t = t.to(torch.float32)  # bfloat16 and others: numpy has no bfloat16
    return t.detach().contiguous().numpy()


# --- --meta-llama DIR

META_SPLIT = {  # Meta name -> dimension the model-parallel shards split it along (None: replicated)
    "tok_embeddings.weight": 1, "norm.weight": None, "output.weight": 0,
    "attention_norm.weight": None, "ffn_norm.weight": None,
    "attention.wq.weight": 0, "attention.wk.weight": 0, "attention.wv.weight": 0, "attention.wo.weight": 1,
    "feed_forward.w1.weight": 0, "feed_forward.w2.weight": 1, "feed_forward.w3.weight": 0,
}
META_LAYER = {"attn_norm": "attention_norm.weight", "attn_q": "attention.wq.weight",
              "attn_k": "attention.wk.weight", "attn_v": "attention.wv.weight",
              "attn_output": "attention.wo.weight", "ffn_norm": "ffn_norm.weight",
              "ffn_gate": "feed_forward.w1.weight", "ffn_down": "feed_forward.w2.weight",
              "ffn_up": "feed_forward.w3.weight"}


def read_folder_config(folder, flag, name, what, other_name, other_flag):
    """The JSON config a checkpoint folder must hold, with a hint when the folder
    is of the other kind. Returns (path, parsed JSON)."""
    require_dir(folder, flag)
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        hint = f"; it has {other_name}: use {other_flag}" if os.path.isfile(os.path.join(folder, other_name)) else ""
        raise ExportError(f"{folder} has no {name}: not a {what} folder{hint}")
    return path, read_json(path)


def load_meta(folder, context):
    params_path, params = read_folder_config(folder, "--meta-llama", "params.json", "Meta Llama checkpoint",
                                             "config.json", "--hf")
    shards = sorted(glob.glob(os.path.join(glob.escape(folder), "consolidated.*.pth")))
    if not shards:
        raise ExportError(f"{folder} has no consolidated.*.pth weight files")
    sizes = sum(os.path.getsize(p) for p in shards)
    if sys.stderr.isatty() and sizes > 1 << 30:
        print(f"export.py: loading {len(shards)} shard(s), {sizes / 2**30:.1f} GiB, into memory", file=sys.stderr)
    states = [torch_load(p) for p in shards]
    torch = import_torch()

    def parts(key):
        split = META_SPLIT[key.split(".", 2)[2] if key.startswith("layers.") else key]
        ts = []
        for p, s in zip(shards, states):
            if key not in s:
                raise ExportError(f"{p} has no tensor {key}")
            ts.append(s[key])
        return ts, split

    def merged_shape(key):
        ts, split = parts(key)
        shape = list(ts[0].shape)
        if split is not None and len(ts) > 1:
            for t in ts[1:]:
                other = list(t.shape)
                if len(other) != len(shape) or split >= len(shape) or any(
                        a != b for j, (a, b) in enumerate(zip(shape, other)) if j != split):
                    raise ExportError(f"{key}: shards have shapes {list(ts[0].shape)} and {other}, "
                                      f"which do not join along dimension {split}")
                shape[split] += other[split]
        return tuple(shape)

    def merged(key):
        ts, split = parts(key)
        return ts[0] if split is None or len(ts) == 1 else torch.cat(ts, dim=split)

    def loader(key):
        def load():
            a = torch_to_numpy(merged(key))
            for s in states:  # free the shards' copies as we go
                s.pop(key, None)
            return a
        return load

    where = params_path
    emb_shape = merged_shape("tok_embeddings.weight")
    w1_shape = merged_shape("layers.0.feed_forward.w1.weight")
    if len(emb_shape) != 2 or len(w1_shape) != 2:
        raise ExportError(f"{shards[0]}: tok_embeddings or w1 is not a matrix")
    dim = int_field(params, "dim", where)
    n_heads = int_field(params, "n_heads", where)
    vocab = params.get("vocab_size", -1)
    if vocab is None or vocab == -1:
        vocab = emb_shape[0]
    cfg = {
        "dim": dim, "n_layers": int_field(params, "n_layers", where), "n_heads": n_heads,
        "n_kv_heads": params.get("n_kv_heads") or n_heads,
        "head_size": dim // n_heads if n_heads > 0 and dim % n_heads == 0 else -1,
        "vocab_size": vocab, "hidden_dim": w1_shape[0],
        "norm_eps": params.get("norm_eps", 1e-5), "rope_theta": params.get("rope_theta", 10000.0),
        "context": context or params.get("max_seq_len", 4096),
    }
    if n_heads > 0 and dim % n_heads:
        raise ExportError(f"{where}: dim {dim} is not a multiple of n_heads {n_heads}")
    check_config(cfg, where)
    if any("output.weight" not in s for s in states):
        tied = True
    else:
        emb, out = merged("tok_embeddings.weight"), merged("output.weight")
        tied = emb.shape == out.shape and emb.dtype == out.dtype and bool(torch.equal(emb, out))
        del emb, out
        if tied:
            for s in states:
                s.pop("output.weight")
    tensors = {}
    for gguf, key in [("token_embd.weight", "tok_embeddings.weight"), ("output_norm.weight", "norm.weight")] + \
            ([] if tied else [("output.weight", "output.weight")]):
        tensors[gguf] = (merged_shape(key), loader(key), f"{key} in {folder}")
    for i in range(cfg["n_layers"]):
        for short, meta in META_LAYER.items():
            key = f"layers.{i}.{meta}"
            tensors[f"blk.{i}.{short}.weight"] = (merged_shape(key), loader(key), f"{key} in {folder}")
    parent = os.path.dirname(os.path.abspath(folder))
    return Model(cfg, tensors, tied, folder_name(folder), [folder, parent])


# --- --hf DIR

SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}


def safetensors_index(path):
    """name -> (shape, loader) for the tensors of one .safetensors file: an
    8-byte little-endian header length, a JSON header {name: {dtype, shape,
    data_offsets: [begin, end]}} (offsets from the end of the header), the data."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ExportError(f"{path} is too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 1 << 30:
            raise ExportError(f"{path}: header length {n} does not fit the file; not a safetensors file")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ExportError(f"{path}: bad safetensors header: {one_line(e)}")
    if not isinstance(header, dict):
        raise ExportError(f"{path}: bad safetensors header")
    base = 8 + n
    index = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(int(s) for s in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ExportError(f"{path}: bad safetensors entry for {name}")

        def load(dtype=dtype, shape=shape, begin=begin, name=name):
            if dtype not in SAFETENSORS_DTYPES:
                raise ExportError(f"{path}: {name} is {dtype}; only F32, F16 and BF16 are supported")
            a = np.memmap(path, dtype=SAFETENSORS_DTYPES[dtype], mode="r", offset=base + begin, shape=shape)
            if dtype == "BF16":  # the top half of a float32
                a = (a.astype(np.uint32) << 16).view(np.float32)
            return a

        if dtype in SAFETENSORS_DTYPES:
            nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(SAFETENSORS_DTYPES[dtype]).itemsize
            if not (0 <= begin <= end <= size - base) or end - begin != nbytes:
                raise ExportError(f"{path}: {name}'s data_offsets {[begin, end]} do not fit its shape or the file")
        index[name] = (shape, load)
    return index


def unpermute_rows(w, n_heads):
    """Undoes Hugging Face's q_proj/k_proj row order. HF's converter made
    w_hf = w.view(n_heads, hs//2, 2, in).transpose(1, 2).reshape(out, in);
    so w = w_hf.view(n_heads, 2, hs//2, in).transpose(1, 2).reshape(out, in)."""
    rows, cols = w.shape
    return np.ascontiguousarray(w.reshape(n_heads, 2, rows // n_heads // 2, cols).swapaxes(1, 2).reshape(rows, cols))


HF_LAYER = {"attn_norm": "input_layernorm.weight", "attn_q": "self_attn.q_proj.weight",
            "attn_k": "self_attn.k_proj.weight", "attn_v": "self_attn.v_proj.weight",
            "attn_output": "self_attn.o_proj.weight", "ffn_norm": "post_attention_layernorm.weight",
            "ffn_gate": "mlp.gate_proj.weight", "ffn_down": "mlp.down_proj.weight", "ffn_up": "mlp.up_proj.weight"}


def positive_number(d, key, where, default):
    v = d.get(key, default)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 < v < float("inf"):
        raise ExportError(f"{where}: {key} = {v!r}, expected a positive number")
    return v


def llama3_rope_factors(head_size, theta, scaling, where):
    """rope_freqs.weight: one factor per rotated pair, by which llama.cpp divides that
    pair's frequency theta^(-2i/head_size). Llama 3's scaling (Meta's apply_scaling):
    with wavelength 2 pi / freq, pairs of wavelength under original/high_freq_factor
    keep their frequency (1), those over original/low_freq_factor are slowed by
    `factor`, and those between get 1 / ((1 - s) / factor + s), s = (original /
    wavelength - low) / (high - low). Computed in float32, step by step as llama.cpp's
    converter computes it (torch float32: x / y there is x * (1/y) where y is a
    tensor), so the stored values are the same bits (checked for Llama 3's settings;
    where torch's own pow is an ulp off, at a near-tie, these are the exact ones)."""
    factor = positive_number(scaling, "factor", where, 8.0)
    low = positive_number(scaling, "low_freq_factor", where, 1.0)
    high = positive_number(scaling, "high_freq_factor", where, 4.0)
    original = positive_number(scaling, "original_max_position_embeddings", where, 8192)
    if not high > low:
        raise ExportError(f"{where}: rope_scaling high_freq_factor {high} is not above low_freq_factor {low}")
    f32 = np.float32
    exponents = np.arange(0, head_size, 2, dtype=f32) / f32(head_size)
    # theta ** e correctly rounded to float32 (through float64), as torch's float32 pow
    # gives it; NumPy's float32 power may be an ulp or more off.
    freqs = f32(1) / (np.float64(f32(theta)) ** exponents.astype(np.float64)).astype(f32)
    out = []
    for freq in freqs:
        wavelen = (f32(1) / freq) * f32(2 * np.pi)
        if wavelen < f32(original / high):
            out.append(f32(1))
        elif wavelen > f32(original / low):
            out.append(f32(factor))
        else:
            smooth = ((f32(1) / wavelen) * f32(original) - f32(low)) / f32(high - low)
            out.append(f32(1) / ((f32(1) - smooth) / f32(factor) + smooth))
    return np.array(out, dtype=np.float32)


def hf_rope(config, where):
    """(rope_theta, scaling) from config.json, where scaling is None, ("linear",
    factor) or ("llama3", its parameters). rope_parameters (newer transformers) holds
    what rope_scaling and rope_theta held; "type" is the older name of "rope_type".
    Other kinds of scaling (yarn, dynamic, longrope) are refused by name."""
    params = config.get("rope_parameters")
    scaling = params if params is not None else config.get("rope_scaling")
    if scaling is None:
        scaling = {}
    if not isinstance(scaling, dict):
        raise ExportError(f"{where}: rope_scaling is {one_line(json.dumps(scaling))[:60]}, expected an object")
    theta = scaling.get("rope_theta", config.get("rope_theta", 10000.0))
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind in (None, "default", "none"):
        return theta, None
    if kind == "linear":
        return theta, ("linear", positive_number(scaling, "factor", where, None))
    if isinstance(kind, str) and kind.lower() == "llama3":
        return theta, ("llama3", scaling)
    raise ExportError(f"{where}: rope_scaling type {kind!r} is not supported (only llama3 and linear)")


def load_hf(folder, context):
    config_path, config = read_folder_config(folder, "--hf", "config.json", "Hugging Face model", "params.json",
                                             "--meta-llama")
    where = config_path
    theta, scaling = hf_rope(config, where)
    dim = int_field(config, "hidden_size", where)
    n_heads = int_field(config, "num_attention_heads", where)
    if n_heads <= 0 or dim % n_heads:
        raise ExportError(f"{where}: hidden_size {dim} is not a multiple of num_attention_heads {n_heads}")
    head_size = dim // n_heads
    if config.get("head_dim") not in (None, head_size):  # llama.cpp's llama files assume hidden_size / heads
        raise ExportError(f"{where}: head_dim {config['head_dim']!r} is not hidden_size / num_attention_heads "
                          f"({head_size}); not supported")
    cfg = {
        "dim": dim, "hidden_dim": int_field(config, "intermediate_size", where),
        "n_layers": int_field(config, "num_hidden_layers", where), "n_heads": n_heads,
        "n_kv_heads": config.get("num_key_value_heads") or n_heads, "head_size": head_size,
        "vocab_size": int_field(config, "vocab_size", where),
        "norm_eps": config.get("rms_norm_eps", 1e-6), "rope_theta": theta,
        "context": context or config.get("max_position_embeddings", 2048),
    }
    check_config(cfg, where)

    entries = {}  # HF name -> (shape, loader, file)
    torch_tensors = {}  # HF name -> tensor, for pytorch_model*.bin
    files = sorted(glob.glob(os.path.join(glob.escape(folder), "*.safetensors")))
    if files:
        for path in files:
            for name, (shape, load) in safetensors_index(path).items():
                if name in entries:
                    raise ExportError(f"{name} is in both {entries[name][2]} and {path}")
                entries[name] = (shape, load, path)
    else:
        files = sorted(glob.glob(os.path.join(glob.escape(folder), "pytorch_model*.bin")))
        if not files:
            raise ExportError(f"{folder} has neither *.safetensors nor pytorch_model*.bin weight files")
        for path in files:
            for name, t in torch_load(path).items():
                if name in entries:
                    raise ExportError(f"{name} is in both {entries[name][2]} and {path}")
                torch_tensors[name] = t
                # pop: the tensor is freed once written
                entries[name] = (tuple(t.shape), (lambda name=name: torch_to_numpy(torch_tensors.pop(name))), path)

    def entry(name, transform=None):
        if name not in entries:
            raise ExportError(f"{folder}: no tensor {name} in its weight files (not a Llama model?)")
        shape, load, path = entries[name]
        if transform is not None:
            load = (lambda load=load: transform(load()))
        return shape, load, f"{name} in {path}"

    tied = bool(config.get("tie_word_embeddings", False)) or "lm_head.weight" not in entries
    emb_name = "model.embed_tokens.weight"
    if not tied and emb_name in entries and entries["lm_head.weight"][0] == entries[emb_name][0]:
        # stored twice but equal: tie them (llama.cpp reuses token_embd)
        if torch_tensors:
            tied = bool(import_torch().equal(torch_tensors["lm_head.weight"], torch_tensors[emb_name]))
        else:
            tied = same_values(entries["lm_head.weight"][1](), entries[emb_name][1]())
        if tied and torch_tensors:
            del torch_tensors["lm_head.weight"]
    tensors = {"token_embd.weight": entry("model.embed_tokens.weight"), "output_norm.weight": entry("model.norm.weight")}
    if not tied:
        tensors["output.weight"] = entry("lm_head.weight")
    for i in range(cfg["n_layers"]):
        for short, hf in HF_LAYER.items():
            transform = None
            if short == "attn_q":
                transform = (lambda w: unpermute_rows(w, cfg["n_heads"]))
            elif short == "attn_k":
                transform = (lambda w: unpermute_rows(w, cfg["n_kv_heads"]))
            tensors[f"blk.{i}.{short}.weight"] = entry(f"model.layers.{i}.{hf}", transform)
    parent = os.path.dirname(os.path.abspath(folder))
    model = Model(cfg, tensors, tied, folder_name(folder), [folder, parent])
    model.config = config
    if scaling and scaling[0] == "linear":
        model.kvs = [gguf_kv("llama.rope.scaling.type", GGUF_STRING, "linear"),
                     gguf_kv("llama.rope.scaling.factor", GGUF_FLOAT32, scaling[1])]
    elif scaling:
        model.rope_freqs = llama3_rope_factors(head_size, theta, scaling[1], where)
    if "head_dim" in config:  # llama.cpp's converter records it so
        model.kvs += [gguf_kv("llama.attention.key_length", GGUF_UINT32, head_size),
                      gguf_kv("llama.attention.value_length", GGUF_UINT32, head_size)]
    return model


def same_values(a, b):
    """Whether two (memory-mapped) matrices hold the same values, compared a slice at a time."""
    if a.shape != b.shape:
        return False
    step = max(1, (1 << 22) // max(1, a[0].size))
    return all(np.array_equal(a[r:r + step], b[r:r + step]) for r in range(0, len(a), step))


# --- --llama2c FILE

LLAMA2C_MAGIC = 0x616B3432  # "ak42" read as a little-endian uint32


def load_llama2c(path, context):
    if not os.path.exists(path):
        raise ExportError(f"--llama2c {path}: no such file")
    if not os.path.isfile(path):
        raise ExportError(f"--llama2c {path}: not a file")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(256)
    if len(head) >= 8 and struct.unpack_from("<I", head)[0] == LLAMA2C_MAGIC:
        version = struct.unpack_from("<i", head, 4)[0]
        if version not in (1, 2):
            raise ExportError(f"{path}: llama2.c checkpoint version {version}; only the legacy layout and versions 1 and 2 are known")
        if len(head) < 256:
            raise ExportError(f"{path}: {size} bytes is too short for a version {version} header (256 bytes)")
        dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack_from("<7i", head, 8)
        shared = head[36]
        if shared > 1:
            raise ExportError(f"{path}: header has shared_classifier = {shared}, expected 0 or 1")
        group_size = struct.unpack_from("<i", head, 37)[0] if version == 2 else 0
        offset = 256
    else:
        version = 0
        if len(head) < 28:
            raise ExportError(f"{path}: {size} bytes is too short for a llama2.c checkpoint")
        dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack_from("<7i", head)
        shared, vocab = vocab > 0, abs(vocab)  # negative vocab_size: a separate classifier at the end
        offset = 28
    cfg = {"dim": dim, "hidden_dim": hidden, "n_layers": n_layers, "n_heads": n_heads, "n_kv_heads": n_kv_heads,
           "head_size": dim // n_heads if n_heads > 0 else 0, "vocab_size": vocab,
           "context": context or seq_len, "norm_eps": 1e-5, "rope_theta": 10000.0}
    layout = "legacy" if version == 0 else f"version {version}"
    where = f"{path} (llama2.c {layout} header)"
    try:
        check_config(cfg, where)
        if dim % n_heads:
            raise ExportError(f"{where}: dim {dim} is not a multiple of n_heads {n_heads}")
        if seq_len <= 0:
            raise ExportError(f"{where}: seq_len = {seq_len}")
    except ExportError as e:
        raise ExportError(f"{e} (is this a llama2.c checkpoint?)")
    hs, L = cfg["head_size"], n_layers
    kv_dim = n_kv_heads * hs
    shapes = {"tok": (vocab, dim), "wq": (dim, dim), "wk": (kv_dim, dim), "wv": (kv_dim, dim), "wo": (dim, dim),
              "w1": (hidden, dim), "w2": (dim, hidden), "w3": (hidden, dim), "wcls": (vocab, dim)}
    if version == 2:
        if group_size <= 0:
            raise ExportError(f"{where}: group_size = {group_size}")
        for k, (r, c) in shapes.items():
            if (r * c) % group_size:
                raise ExportError(f"{where}: group_size {group_size} does not divide the {k} matrix ({r}x{c})")

    regions = []  # (key, kind, shape, byte offset): kind "f32" or "q8"

    def take(key, shape, kind="f32"):
        nonlocal offset
        n = int(np.prod(shape, dtype=np.int64))
        regions.append((key, kind, shape, offset))
        offset += n * 4 if kind == "f32" else n + n // group_size * 4

    def take_matrices(key, layers):
        kind = "q8" if version == 2 else "f32"
        if layers is None:
            take(key, shapes[key], kind)
        elif version == 2:  # each layer's matrix quantized on its own: int8 values, then scales
            for i in range(layers):
                take(f"{key}.{i}", shapes[key], kind)
        else:
            take(key, (layers,) + shapes[key])

    if version == 0:
        take_matrices("tok", None)
        take("rms_att", (L, dim))
        for k in ("wq", "wk", "wv", "wo"):
            take_matrices(k, L)
        take("rms_ffn", (L, dim))
        for k in ("w1", "w2", "w3"):
            take_matrices(k, L)
        take("rms_final", (dim,))
        take("rope_tables", (seq_len * hs,))  # freq_cis_real and freq_cis_imag, seq_len * hs/2 each: unused
    else:
        take("rms_att", (L, dim))
        take("rms_ffn", (L, dim))
        take("rms_final", (dim,))
        take_matrices("tok", None)
        for k in ("wq", "wk", "wv", "wo", "w1", "w2", "w3"):
            take_matrices(k, L)
    if not shared:
        take_matrices("wcls", None)
    if offset != size:
        raise ExportError(f"{path}: {size} bytes, but its header (llama2.c {layout}: dim {dim}, hidden_dim "
                          f"{hidden}, n_layers {L}, n_heads {n_heads}, n_kv_heads {n_kv_heads}, vocab_size {vocab}"
                          f"{', group_size %d' % group_size if version == 2 else ''}) implies {offset}")

    data = np.memmap(path, dtype=np.uint8, mode="r")
    region = {key: (kind, shape, off) for key, kind, shape, off in regions}

    def array(key, layer=None):
        if version == 2 and layer is not None and not key.startswith("rms"):
            key, layer = f"{key}.{layer}", None  # version 2 keeps each layer's matrix apart
        kind, shape, off = region[key]
        n = int(np.prod(shape, dtype=np.int64))
        if kind == "q8":
            q = np.frombuffer(data, dtype=np.int8, count=n, offset=off)
            s = np.frombuffer(data, dtype="<f4", count=n // group_size, offset=off + n)
            return (q.reshape(-1, group_size) * s[:, None]).reshape(shape)  # float32, as runq.c computes q * s
        a = np.frombuffer(data, dtype="<f4", count=n, offset=off).reshape(shape)
        return a if layer is None else a[layer]

    label = path
    tensors = {"token_embd.weight": (shapes["tok"], lambda: array("tok"), label),
               "output_norm.weight": ((dim,), lambda: array("rms_final"), label)}
    if not shared:
        tensors["output.weight"] = (shapes["wcls"], lambda: array("wcls"), label)
    per_layer = {"attn_norm": ("rms_att", (dim,)), "attn_q": ("wq", None), "attn_k": ("wk", None),
                 "attn_v": ("wv", None), "attn_output": ("wo", None), "ffn_norm": ("rms_ffn", (dim,)),
                 "ffn_gate": ("w1", None), "ffn_down": ("w2", None), "ffn_up": ("w3", None)}
    for i in range(L):
        for short, (key, shape) in per_layer.items():
            tensors[f"blk.{i}.{short}.weight"] = (shape or shapes[key], (lambda key=key, i=i: array(key, i)), label)
    stem = os.path.splitext(os.path.basename(path))[0]
    return Model(cfg, tensors, bool(shared), stem, [os.path.dirname(os.path.abspath(path))])


# --- Tokenizer

def is_tokenizer_json(path):
    """A Hugging Face tokenizer.json (a JSON object), as opposed to a SentencePiece
    model (a protocol buffer: its first byte is a field key, 0x0a)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise ExportError(f"cannot read {path}: {e.strerror}")
    return head.lstrip()[:1] == b"{"


def find_tokenizer(explicit, model, flag):
    """The tokenizer to embed: --tokenizer (a file, or a folder holding one), else the
    first folder of the model's that holds tokenizer.model (SentencePiece) or, failing
    that, tokenizer.json (Llama 3's BPE). tokenizer.model comes first: Llama 2's
    Hugging Face folders hold both, and their tokenizer.json is SentencePiece's BPE."""
    names = ("tokenizer.model", "tokenizer.json")
    if explicit:
        path = explicit
        if os.path.isdir(explicit):
            path = next((p for p in (os.path.join(explicit, n) for n in names) if os.path.isfile(p)), "")
        if not os.path.isfile(path):
            raise ExportError(f"--tokenizer {explicit}: no such file")
        return path
    for d in model.tokenizer_dirs:
        for name in names:
            path = os.path.join(d, name)
            if os.path.isfile(path):
                return path
    where = " or ".join(model.tokenizer_dirs)
    raise ExportError(f"no tokenizer.model or tokenizer.json in {where}: give --tokenizer PATH "
                      f"(a SentencePiece .model or a tokenizer.json) for {flag}")


# Llama 3's pre-tokenizer: tokenizer.json's Split regex (Meta's tiktoken pattern), which
# llama.cpp implements under tokenizer.ggml.pre "llama-bpe". Another regex would
# tokenize differently under that name, so it is refused.
LLAMA3_SPLIT_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                      r"\s*[\r\n]+|\s+(?!\S)|\s+")

# tokenizer_config.json's <typ>_token -> the GGUF key of its id (llama.cpp's names, its spelling).
BPE_SPECIAL_KEYS = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id",
                    "sep": "seperator_token_id", "pad": "padding_token_id", "eot": "eot_token_id"}


def looks_special(text):
    """Added tokens llama.cpp's converter makes CONTROL even when not marked special."""
    return (text in ("<pad>", "<mask>", "<2mass>", "[@BOS@]") or (text.startswith("<|") and text.endswith("|>"))
            or (text.startswith("<\uff5c") and text.endswith("\uff5c>"))
            or (text.startswith("<unused") and text.endswith(">")))


def check_llama3_pre_tokenizer(tj, path):
    pre = tj.get("pre_tokenizer")
    steps = pre.get("pretokenizers") if isinstance(pre, dict) and pre.get("type") == "Sequence" else None
    ok = isinstance(steps, list) and len(steps) == 2 and all(isinstance(s, dict) for s in steps)
    if ok:
        split, byte_level = steps
        pattern = split.get("pattern")
        ok = (split.get("type") == "Split" and isinstance(pattern, dict)
              and pattern.get("Regex") == LLAMA3_SPLIT_REGEX and split.get("behavior") == "Isolated"
              and not split.get("invert") and byte_level.get("type") == "ByteLevel"
              and not byte_level.get("use_regex", True))
    if not ok:
        raise ExportError(f"{path}: pre_tokenizer {one_line(json.dumps(pre))[:120]} is not Llama 3's (a Split on "
                          "its regex, then ByteLevel): only Llama 3's tokenizer.json is supported")
    if tj.get("normalizer") is not None:
        raise ExportError(f"{path}: has a normalizer ({one_line(json.dumps(tj['normalizer']))[:80]}); "
                          "Llama 3's tokenizer has none")


def bpe_merges(model, vocab, path):
    """tokenizer.json's merges, in rank order, as GGUF's "left right" strings. Two
    forms exist: "left right" strings (older files) and [left, right] pairs (newer).
    Each side, and their join, must be in the vocabulary, as Hugging Face's
    tokenizers require."""
    merges = model.get("merges")
    if not isinstance(merges, list) or not merges:
        raise ExportError(f"{path}: no merges: a BPE tokenizer needs its merge list")
    out = []
    for k, m in enumerate(merges):
        if type(m) is str:
            a, space, b = m.partition(" ")
            if not space or not a or not b or " " in b:
                raise ExportError(f"{path}: merges[{k}] {m!r} is not two tokens separated by one space")
        elif type(m) is list and len(m) == 2 and type(m[0]) is str and type(m[1]) is str and m[0] and m[1]:
            a, b = m
            if " " in a or " " in b:
                raise ExportError(f"{path}: merges[{k}] {m!r} has a space inside a token, which GGUF's "
                                  "\"left right\" merges cannot hold")
        else:
            raise ExportError(f"{path}: merges[{k}] is {one_line(json.dumps(m))[:60]}, expected \"left right\" "
                              "or [left, right]")
        if a not in vocab or b not in vocab or a + b not in vocab:
            missing = next(t for t in (a, b, a + b) if t not in vocab)
            raise ExportError(f"{path}: merges[{k}] {a!r} {b!r} names {missing!r}, which is not in the vocabulary")
        out.append(a + " " + b)
    return out


def token_content(entry):
    """tokenizer_config.json's bos_token etc.: a string, or an object with "content"."""
    if isinstance(entry, dict):
        entry = entry.get("content")
    return entry if isinstance(entry, str) else None


def template_special(item):
    """The token a TemplateProcessing item names, if it is a SpecialToken."""
    return item.get("SpecialToken", {}).get("id") if isinstance(item, dict) else None


def bpe_special_tokens(tj, tcfg, config):
    """(token ids by kind, add_* flags by kind), decided as llama.cpp's converter
    (gguf-py's SpecialVocab) decides them: each <kind>_token of tokenizer_config.json
    names an added token; config.json's <kind>_token_id fills in the kinds still
    unset (so tokenizer_config's eos, <|eot_id|> in the instruct models, wins over
    config.json's); add_bos from the post-processor's template (whether it starts
    with the bos token), add_sep from its pair template, then tokenizer_config's
    add_<kind>_token, when a boolean, overrides."""
    contents = {k: token_content(tcfg.get(f"{k}_token")) for k in BPE_SPECIAL_KEYS}
    flags = {}
    post = tj.get("post_processor")
    procs = post.get("processors", [post]) if isinstance(post, dict) else []
    for p in procs:
        if not isinstance(p, dict) or p.get("type") != "TemplateProcessing":
            continue
        special = template_special
        single, pair = p.get("single") or [], p.get("pair") or []
        first = special(single[0]) if len(single) > 1 else None
        last = special(single[-1]) if len(single) > 1 else None
        if first:
            if contents["bos"] is None:
                contents["bos"] = first
            flags["bos"] = first == contents["bos"]
        if last:  # a trailing special is the eos token; an eos named otherwise becomes eot
            if contents["eos"] != last:
                contents["eot"], contents["eos"] = contents["eos"], last
            flags["eos"] = True
        if pair:
            # the pair template without the single one's leading/trailing specials:
            # A [sep] [eos] B adds a separator
            start = 1 if first and special(pair[0]) == first else 0
            stop = -1 if last and special(pair[-1]) == last else None
            pair = pair[start:stop]
            seq = [it.get("Sequence", {}).get("id") if isinstance(it, dict) else None for it in pair]
            if len(pair) > 2 and seq[0] == "A" and seq[-1] == "B":
                middle = [special(it) for it in pair[1:-1]]
                seps = {contents["sep"], contents["eos"]} - {None}
                flags["sep"] = (middle[0] in seps and not last) or (len(middle) == 2 and middle[1] in seps)
    for kind in BPE_SPECIAL_KEYS:
        if isinstance(tcfg.get(f"add_{kind}_token"), bool):
            flags[kind] = tcfg[f"add_{kind}_token"]
    ids = {}
    added = [a for a in tj.get("added_tokens") or [] if isinstance(a, dict)]
    for kind, content in contents.items():
        i = next((a.get("id") for a in added if content is not None and a.get("content") == content), None)
        if not isinstance(i, int) or isinstance(i, bool):
            i = config.get(f"{kind}_token_id")  # a list (several eos ids) is not an id
        if isinstance(i, int) and not isinstance(i, bool) and i >= 0:
            ids[kind] = i
    return ids, flags


def read_optional_json(folder, name):
    path = os.path.join(folder, name)
    return read_json(path) if os.path.isfile(path) else {}


def bpe_tokenizer_metadata(path, vocab_size=None, config=None):
    """The tokenizer.ggml.* keys for a Hugging Face tokenizer.json of Llama 3's kind
    (byte-level BPE), as llama.cpp's converter writes them: model "gpt2", pre
    "llama-bpe", every token in id order (vocabulary, then added tokens; ids the
    model has rows for but the tokenizer lacks become "[PADn]", UNUSED), token types
    (NORMAL; an added token CONTROL when special, USER_DEFINED otherwise), merges,
    special token ids and add_* flags, and tokenizer_config.json's chat template.
    config: config.json's values (for its *_token_id); tokenizer_config.json and
    chat_template.jinja are read beside tokenizer.json."""
    tj = read_json(path)
    model = tj.get("model")
    kind = model.get("type") if isinstance(model, dict) else None
    if kind != "BPE":
        raise ExportError(f"{path}: tokenizer model is {kind!r}, not BPE: only Llama 3's byte-level BPE "
                          "tokenizer.json is supported (for SentencePiece, give tokenizer.model)")
    if model.get("byte_fallback"):
        raise ExportError(f"{path}: a BPE with byte fallback is SentencePiece's (Llama 2): give its tokenizer.model")
    check_llama3_pre_tokenizer(tj, path)
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise ExportError(f"{path}: model.vocab is not a non-empty object")
    by_id, types = {}, {}
    for text, i in vocab.items():
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < 1 << 31 or i in by_id:
            raise ExportError(f"{path}: vocabulary entry {text!r} has id {i!r}, not a new non-negative integer")
        by_id[i], types[i] = text, NORMAL
    for a in tj.get("added_tokens") or []:
        i, text = (a.get("id"), a.get("content")) if isinstance(a, dict) else (None, None)
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < 1 << 31 or not isinstance(text, str):
            raise ExportError(f"{path}: added token {one_line(json.dumps(a))[:80]} has no id and content")
        if i in by_id and by_id[i] != text:
            raise ExportError(f"{path}: added token {text!r} has id {i}, which is {by_id[i]!r} in the vocabulary")
        if a.get("special") or looks_special(text):
            types[i] = CONTROL
        else:
            text = text.replace("\u2581", " ")  # llama.cpp matches user-defined tokens on plain spaces
            types[i] = USER_DEFINED
        by_id[i] = text
    n = max(by_id) + 1
    if vocab_size is None:
        vocab_size = n
    elif n > vocab_size:
        raise ExportError(f"{path} has token ids up to {n - 1}, but the model's vocabulary has {vocab_size} rows: "
                          "give --tokenizer the model's own tokenizer.json")
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(vocab_size)]
    token_types = [types.get(i, UNUSED) for i in range(vocab_size)]
    merges = bpe_merges(model, vocab, path)

    folder = os.path.dirname(os.path.abspath(path))
    tcfg = read_optional_json(folder, "tokenizer_config.json")
    ids, flags = bpe_special_tokens(tj, tcfg, config if config is not None else
                                    read_optional_json(folder, "config.json"))
    kvs = []
    if isinstance(tcfg.get("add_prefix_space"), bool):
        kvs.append(gguf_kv("tokenizer.ggml.add_space_prefix", GGUF_BOOL, tcfg["add_prefix_space"]))
    kvs += [gguf_kv("tokenizer.ggml.model", GGUF_STRING, "gpt2"),
            gguf_kv("tokenizer.ggml.pre", GGUF_STRING, "llama-bpe"),
            gguf_kv("tokenizer.ggml.tokens", GGUF_ARRAY, tokens, GGUF_STRING),
            gguf_kv("tokenizer.ggml.token_type", GGUF_ARRAY, token_types, GGUF_INT32),
            gguf_kv("tokenizer.ggml.merges", GGUF_ARRAY, merges, GGUF_STRING)]
    for kind, i in ids.items():
        if i < vocab_size:
            kvs.append(gguf_kv(f"tokenizer.ggml.{BPE_SPECIAL_KEYS[kind]}", GGUF_UINT32, i))
    for kind, value in flags.items():
        kvs.append(gguf_kv(f"tokenizer.ggml.add_{kind}_token", GGUF_BOOL, value))
    kvs += chat_template_kvs(tcfg, folder)
    return kvs, n


def chat_template_kvs(tcfg, folder):
    """tokenizer_config.json's chat_template, verbatim (else chat_template.jinja beside
    it): a string, or a list of {name, template} whose "default" is the template and
    the others go under tokenizer.chat_template.<name>, as llama.cpp names them."""
    template = tcfg.get("chat_template")
    jinja = os.path.join(folder, "chat_template.jinja")
    if template is None and os.path.isfile(jinja):
        with open(jinja, "rb") as f:
            template = f.read().decode("utf-8")
    if isinstance(template, str):
        return [gguf_kv("tokenizer.chat_template", GGUF_STRING, template)]
    kvs, names = [], []
    for choice in template if isinstance(template, list) else []:
        if not isinstance(choice, dict) or not isinstance(choice.get("template"), str):
            continue
        name = "".join(c if c.isascii() and c.isalnum() else "_" for c in str(choice.get("name", "")))
        if name == "default":
            kvs.insert(0, gguf_kv("tokenizer.chat_template", GGUF_STRING, choice["template"]))
        elif name:
            kvs.append(gguf_kv(f"tokenizer.chat_template.{name}", GGUF_STRING, choice["template"]))
            names.append(name)
    if names:
        kvs.append(gguf_kv("tokenizer.chat_templates", GGUF_ARRAY, names, GGUF_STRING))
    return kvs


def tokenizer_metadata(path, vocab_size):
    """The tokenizer.ggml.* keys: SentencePiece pieces as they are (with U+2581),
    scores, and piece types (NORMAL=1, UNKNOWN=2, CONTROL=3, USER_DEFINED=4,
    UNUSED=5, BYTE=6, as sentencepiece_model.proto numbers them)."""
    normalizer = {}
    pieces, bos_id, eos_id, unk_id = load_sentencepiece(path, normalizer)
    if len(pieces) > vocab_size:
        raise ExportError(f"{path} has {len(pieces)} pieces, but the model's vocabulary has {vocab_size} rows: "
                          "give --tokenizer the model's own tokenizer.model")
    tokens = [p[0] for p in pieces]
    scores = [p[1] for p in pieces]
    types = [p[2] for p in pieces]
    for i in range(len(pieces), vocab_size):  # embedding rows past the tokenizer: unused
        tokens.append(f"[PAD{i}]")
        scores.append(-10000.0)
        types.append(UNUSED)
    kvs = [gguf_kv("tokenizer.ggml.model", GGUF_STRING, "llama"),
           gguf_kv("tokenizer.ggml.tokens", GGUF_ARRAY, tokens, GGUF_STRING),
           gguf_kv("tokenizer.ggml.scores", GGUF_ARRAY, scores, GGUF_FLOAT32),
           gguf_kv("tokenizer.ggml.token_type", GGUF_ARRAY, types, GGUF_INT32)]
    for key, i in (("bos_token_id", bos_id), ("eos_token_id", eos_id), ("unknown_token_id", unk_id)):
        if 0 <= i < vocab_size:
            kvs.append(gguf_kv(f"tokenizer.ggml.{key}", GGUF_UINT32, i))
    kvs.append(gguf_kv("tokenizer.ggml.add_bos_token", GGUF_BOOL, True))
    kvs.append(gguf_kv("tokenizer.ggml.add_eos_token", GGUF_BOOL, False))
    # SentencePiece's normalizer flags, under llama.cpp's names: stories260K's tok512.model
    # removes extra whitespace (SentencePiece's default), Llama 2's tokenizer does not.
    kvs.append(gguf_kv("tokenizer.ggml.add_space_prefix", GGUF_BOOL, normalizer["add_dummy_prefix"]))
    kvs.append(gguf_kv("tokenizer.ggml.remove_extra_whitespaces", GGUF_BOOL, normalizer["remove_extra_whitespaces"]))
    return kvs, len(pieces)


# --- Writing

class Progress:
    """A progress bar on stderr, when stderr is a terminal."""

    def __init__(self, total):
        self.total, self.done = max(total, 1), 0
        self.shown = sys.stderr.isatty()

    def update(self, nbytes, name):
        global _progress_line_open
        self.done += nbytes
        if self.shown:
            frac = self.done / self.total
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\rexport.py: [{bar:<30}] {frac * 100:3.0f}% {name[:40]:<40}")
            sys.stderr.flush()
            _progress_line_open = True

    def close(self):
        global _progress_line_open
        if _progress_line_open:
            sys.stderr.write("\n")
            _progress_line_open = False


def write_tensor(f, a, ggml_type, progress, name):
    a = np.asarray(a)
    if a.ndim == 1:
        data = encode(a.astype(np.float32), ggml_type)
        f.write(data)
        progress.update(len(data), name)
        return
    rows, cols = a.shape
    step = max(1, (1 << 20) // cols)  # about a million values at a time
    for r in range(0, rows, step):
        data = encode(np.ascontiguousarray(a[r:r + step], dtype=np.float32), ggml_type)
        f.write(data)
        progress.update(len(data), name)


def export_gguf(out_path, model, tokenizer_path, out_type):
    file_type, matrix_type = OUTPUT_TYPES[out_type]
    cfg = model.cfg
    shapes = expected_shapes(cfg, model.tied)
    for name in list(model.tensors):
        if name not in shapes:
            raise ExportError(f"internal: unexpected tensor {name}")
    plan = []
    if model.rope_freqs is not None:  # first, as llama.cpp's converter writes it
        n = cfg["head_size"] // 2
        plan.append(("rope_freqs.weight", (n,), lambda: model.rope_freqs, "rope_scaling", GGML_F32))
    for name, want in shapes.items():
        if name not in model.tensors:
            raise ExportError(f"the checkpoint has no tensor for {name}")
        shape, load, label = model.tensors[name]
        if tuple(shape) != want:
            raise ExportError(f"{label} has shape {list(shape)}, but the configuration implies {list(want)}")
        plan.append((name, want, load, label, storage_type(want, matrix_type)))

    if is_tokenizer_json(tokenizer_path):
        tok_kvs, n_pieces = bpe_tokenizer_metadata(tokenizer_path, cfg["vocab_size"], model.config)
    else:
        tok_kvs, n_pieces = tokenizer_metadata(tokenizer_path, cfg["vocab_size"])
    kvs = [gguf_kv("general.architecture", GGUF_STRING, "llama"),
           gguf_kv("general.name", GGUF_STRING, model.name),
           gguf_kv("general.alignment", GGUF_UINT32, ALIGNMENT),
           gguf_kv("general.file_type", GGUF_UINT32, file_type),
           gguf_kv("general.quantization_version", GGUF_UINT32, QUANTIZATION_VERSION),
           gguf_kv("llama.vocab_size", GGUF_UINT32, cfg["vocab_size"]),
           gguf_kv("llama.context_length", GGUF_UINT32, cfg["context"]),
           gguf_kv("llama.embedding_length", GGUF_UINT32, cfg["dim"]),
           gguf_kv("llama.block_count", GGUF_UINT32, cfg["n_layers"]),
           gguf_kv("llama.feed_forward_length", GGUF_UINT32, cfg["hidden_dim"]),
           gguf_kv("llama.rope.dimension_count", GGUF_UINT32, cfg["head_size"]),
           gguf_kv("llama.attention.head_count", GGUF_UINT32, cfg["n_heads"]),
           gguf_kv("llama.attention.head_count_kv", GGUF_UINT32, cfg["n_kv_heads"]),
           gguf_kv("llama.attention.layer_norm_rms_epsilon", GGUF_FLOAT32, cfg["norm_eps"]),
           gguf_kv("llama.rope.freq_base", GGUF_FLOAT32, cfg["rope_theta"])] + model.kvs + tok_kvs

    infos, offset = [], 0
    for name, shape, _, _, ggml_type in plan:
        ne = shape[::-1]  # GGUF lists the fastest-varying dimension first
        infos.append(gguf_string(name) + struct.pack(f"<I{len(ne)}QIQ", len(ne), *ne, ggml_type, offset))
        offset = align(offset + tensor_nbytes(shape, ggml_type))
    header = b"".join([b"GGUF", struct.pack("<IQQ", GGUF_VERSION, len(plan), len(kvs))] + kvs + infos)
    data_start = align(len(header))
    total = data_start + offset

    tmp = f"{out_path}.tmp{os.getpid()}"
    progress = Progress(offset)
    renamed = False
    try:
        try:
            f = open(tmp, "wb")
        except OSError as e:
            raise ExportError(f"cannot write {out_path}: {e.strerror}")
        with f:
            f.write(header + bytes(data_start - len(header)))
            for name, shape, load, label, ggml_type in plan:
                a = load()
                if tuple(a.shape) != shape:
                    raise ExportError(f"{label} has shape {list(a.shape)}, expected {list(shape)}")
                write_tensor(f, a, ggml_type, progress, name)
                del a
                f.write(bytes(align(f.tell()) - f.tell()))
            if f.tell() != total:
                raise ExportError(f"internal: wrote {f.tell()} bytes, planned {total}")
        progress.close()
        os.replace(tmp, out_path)
        renamed = True
    finally:
        if not renamed:
            progress.close()
            try:
                os.remove(tmp)
            except OSError:
                pass
    counts = {}
    for _, _, _, _, t in plan:
        counts[GGML_NAMES[t]] = counts.get(GGML_NAMES[t], 0) + 1
    kinds = ", ".join(f"{n} {k}" for k, n in counts.items())
    padded = cfg["vocab_size"] - n_pieces
    tokens = f"{n_pieces} tokens" + (f" + {padded} unused padding rows" if padded else "")
    print(f"wrote {out_path}: {len(plan)} tensors ({kinds}), {tokens}, {total / 2**20:.1f} MiB", file=sys.stderr)


def export_vocab_gguf(out_path, tokenizer_path, name):
    """A vocabulary-only GGUF: no tensors, the tokenizer.ggml.* keys (and the chat
    template) and general.architecture, which is all llama.cpp reads to load a file
    with vocab_only (llama-tokenize). Nothing in it depends on the time or the
    machine, so the same tokenizer.json always gives the same bytes."""
    tok_kvs, n = bpe_tokenizer_metadata(tokenizer_path)
    kvs = [gguf_kv("general.architecture", GGUF_STRING, "llama"),
           gguf_kv("general.name", GGUF_STRING, name or folder_name(os.path.dirname(os.path.abspath(tokenizer_path)))),
           gguf_kv("general.alignment", GGUF_UINT32, ALIGNMENT)] + tok_kvs
    header = b"".join([b"GGUF", struct.pack("<IQQ", GGUF_VERSION, 0, len(kvs))] + kvs)
    write_atomically(out_path, header + bytes(align(len(header)) - len(header)))  # an empty, aligned data section
    print(f"wrote {out_path}: vocabulary only, {n} tokens, {os.path.getsize(out_path) / 2**20:.1f} MiB", file=sys.stderr)


# -----------------------------------------------------------------------------
# Command line

def input_files(path):
    """The files an input path stands for: itself, or every file in a folder."""
    if os.path.isdir(path):
        return [os.path.join(path, n) for n in sorted(os.listdir(path))]
    return [path]


def refuse_overwriting(out, inputs):
    """Refuses an output that is one of the inputs: compared as files (device and
    inode, so another spelling, a link or a symlink of the same file counts), not
    as strings, and before anything is written. And an output that is a folder."""
    if os.path.isdir(out):
        raise ExportError(f"output {out} is a folder; give the path of the file to write")
    if not os.path.exists(out):
        return
    for path in inputs:
        for f in input_files(path):
            if os.path.exists(f) and os.path.samefile(out, f):
                same = "" if os.path.abspath(f) == os.path.abspath(out) else f" ({f})"
                raise ExportError(f"output {out} is the input file{same}: it would be overwritten; "
                                  "give another output path")


def run(args, parser):
    sources = [(flag, value) for flag, value in (("--meta-llama", args.meta_llama), ("--hf", args.hf),
                                                 ("--llama2c", args.llama2c)) if value]
    if len(sources) > 1:
        parser.error("give only one of --meta-llama, --hf and --llama2c")
    if not sources:
        json_tokenizer = bool(args.tokenizer) and os.path.isfile(args.tokenizer) and is_tokenizer_json(args.tokenizer)
        if args.type or args.context or (args.name and not json_tokenizer):
            parser.error("--type, --context and --name need a model: --meta-llama, --hf or --llama2c")
        if json_tokenizer:  # tokenizer.bin cannot hold a BPE vocabulary: a vocabulary-only GGUF instead
            if not args.out or not args.out.endswith(".gguf"):
                parser.error("a tokenizer.json converts to a vocabulary-only GGUF: give the output file, "
                             "export.py OUT.gguf --tokenizer tokenizer.json")
            refuse_overwriting(args.out, [args.tokenizer])
            export_vocab_gguf(args.out, args.tokenizer, args.name)
            return
        if args.tokenizer:
            refuse_overwriting(args.out or "tokenizer.bin", [args.tokenizer])
            export_tokenizer(args.tokenizer, args.out or "tokenizer.bin")
            return
        parser.error("nothing to export: give --meta-llama DIR, --hf DIR, --llama2c FILE, or --tokenizer MODEL")
    if not args.out:
        parser.error("give the output file: export.py OUT.gguf " + sources[0][0] + " ...")
    if args.context is not None and not 0 < args.context <= 1 << 22:
        parser.error(f"--context {args.context}: expected 1..{1 << 22}, the longest context run accepts")
    flag, value = sources[0]
    refuse_overwriting(args.out, [value] + ([args.tokenizer] if args.tokenizer else []))
    loader = {"--meta-llama": load_meta, "--hf": load_hf, "--llama2c": load_llama2c}[flag]
    model = loader(value, args.context)
    if args.name:
        model.name = args.name
    tokenizer = find_tokenizer(args.tokenizer, model, flag)
    refuse_overwriting(args.out, [tokenizer])
    export_gguf(args.out, model, tokenizer, args.type or "f32")


class Terminated(BaseException):  # as KeyboardInterrupt: no "except Exception" stops it
    """SIGTERM or SIGHUP arrived: raised where the program is, so that the
    temporary file is removed on the way out, as after Ctrl-C."""


def on_termination(signum, frame):
    raise Terminated(signal.Signals(signum).name)


def main():
    for name in ("SIGTERM", "SIGHUP"):  # Windows has no SIGHUP
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), on_termination)
    parser = argparse.ArgumentParser(description="Write files for run.c: llama2.c's tokenizer.bin, or a GGUF model.")
    parser.add_argument("out", nargs="?", help="output file (default: tokenizer.bin for --tokenizer alone)")
    parser.add_argument("--tokenizer", metavar="MODEL",
                        help="SentencePiece tokenizer.model or Hugging Face tokenizer.json: alone, converted to "
                             "tokenizer.bin (.model) or a vocabulary-only GGUF (.json); with a model, the "
                             "vocabulary embedded in the GGUF")
    parser.add_argument("--meta-llama", metavar="DIR", help="Meta checkpoint folder (params.json, consolidated.*.pth)")
    parser.add_argument("--hf", metavar="DIR", help="Hugging Face folder (config.json, *.safetensors or pytorch_model*.bin)")
    parser.add_argument("--llama2c", metavar="FILE", help="llama2.c checkpoint (legacy, version 1 or 2)")
    parser.add_argument("--type", choices=sorted(OUTPUT_TYPES), help="storage of the matrices (default f32)")
    parser.add_argument("--context", type=int, metavar="N", help="llama.context_length to record")
    parser.add_argument("--name", help="general.name to record")
    args = parser.parse_args()
    try:
        run(args, parser)
    except ExportError as e:
        fail(one_line(e))
    except MemoryError:
        fail("out of memory")
    except OSError as e:
        fail(one_line(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"))
    except KeyboardInterrupt:
        fail("interrupted")
    except Terminated as e:
        fail(f"stopped by {e}")
    except Exception as e:  # anything unforeseen still gets one line, not a traceback
        fail(one_line(f"unexpected {type(e).__name__}: {e}"))


if __name__ == "__main__":
    main()
