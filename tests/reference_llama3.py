#!/usr/bin/python3
"""Reference logits for a Llama 3.2-shaped model, in NumPy float64: the test oracle
for run.c on Llama 3 GGUFs, and a check of export.py's Llama 3 conversion.

    /usr/bin/python3 tests/reference_llama3.py [MODELS_DIR] [--report]

MODELS_DIR (default: the repository's models/ folder) holds llama3/tokenizer.json.

Builds the random-weight model of tests/make_llama3_model.py in a temporary
folder, exports it with export.py to F32 and to Q8_0 GGUF, and computes two
forward passes that share only the transformer's arithmetic:

  - from the Hugging Face folder (config.json and model.safetensors, read here):
    q and k rotated by halves (rotate_half, as transformers does on these rows),
    with Llama 3's frequencies computed from config.json's rope_scaling by Meta's
    definition (apply_scaling: wavelengths under original/high_freq_factor kept,
    over original/low_freq_factor divided by factor, in between interpolated);
  - from a GGUF: every tensor dequantized to float64 (tests/gguf_read.py,
    tests/gguf_quants.py), q and k rotated in adjacent pairs, each pair's
    frequency divided by rope_freqs.weight, as llama.cpp runs such a file.

Both with grouped-query attention, RMSNorm, SwiGLU and the classifier tied to the
embedding. On the F32 export the two agree to 6e-10 of the largest logit, the
float32 rounding of rope_freqs.weight (the script fails above 2e-9): so export.py's
reordering of q/k rows and its rope_freqs are right; either wrong moves the logits
by 0.1 or more (--report measures how much).

Writes, in tests/logits_stories260K.txt's format (plus # comments):
  tests/logits_llama3_f32.txt   from the Hugging Face folder (= the F32 export's)
  tests/logits_llama3_q8_0.txt  from the Q8_0 export, its quantized values exactly
                                (token_embd is Q8_0 too, so the tied classifier is)
for TOKENS (Llama 3's ids for "Once upon a time, there was a little robot who loved
to paint.", <|begin_of_text|> first, written literally so no tokenizer is involved)
at positions 0, 4, 8, 12 and 15, for every 500th vocabulary id and the 4 highest.
A comment "# greedy 16: ..." gives the 16 ids greedy decoding picks after TOKENS, and
"# greedy margins: ..." each step's top-1 minus top-2 logit, so that a test can tell
a real disagreement from a near-tie.

--report also prints how far the logits move if rope_freqs is ignored or the q/k
rows are left in Hugging Face's order, and runs nothing else.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from gguf_read import GGUFFile  # noqa: E402

PYTHON = sys.executable or "/usr/bin/python3"
TOKENS = [128000, 12805, 5304, 264, 892, 11, 1070, 574, 264, 2697, 12585, 889, 10456, 311, 6308, 13]
POSITIONS = {0, 4, 8, 12, 15}
N_GREEDY = 16
EVERY = 500


# --- Weights

def read_safetensors(path):
    """name -> float64 array. The layout: u64 header length, JSON header, data."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack_from("<Q", raw)
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(raw, "<f4", (end - begin) // 4, 8 + n + begin).reshape(info["shape"]).astype(np.float64)
    return out


def llama3_inv_freq(head_dim, theta, s):
    """Meta's Llama 3 RoPE frequencies (apply_scaling), in float64."""
    freqs = theta ** (-np.arange(0, head_dim, 2) / head_dim)
    factor, low, high = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old = s["original_max_position_embeddings"]
    out = []
    for f in freqs:
        wavelen = 2 * np.pi / f
        if wavelen < old / high:
            out.append(f)
        elif wavelen > old / low:
            out.append(f / factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append((1 - smooth) * f / factor + smooth * f)
    return np.array(out)


def hf_model(folder):
    """The Hugging Face folder as the dict Llama takes, with rotate-half RoPE."""
    cfg = json.load(open(os.path.join(folder, "config.json")))
    t = read_safetensors(os.path.join(folder, "model.safetensors"))
    nh, nkv, dim = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    hs = cfg.get("head_dim", dim // nh)
    assert cfg["rope_scaling"]["rope_type"] == "llama3" and cfg["tie_word_embeddings"] and "lm_head.weight" not in t
    inv_freq = llama3_inv_freq(hs, cfg["rope_theta"], cfg["rope_scaling"])

    def rope(x, pos):
        """rotate_half: each head's first half pairs with its second half."""
        x = x.reshape(-1, hs)
        a, b = x[:, :hs // 2], x[:, hs // 2:]
        c, s = np.cos(pos * inv_freq), np.sin(pos * inv_freq)
        return np.concatenate([a * c - b * s, b * c + a * s], axis=1).reshape(-1)

    L = cfg["num_hidden_layers"]
    layer = lambda name: [t[f"model.layers.{i}.{name}.weight"] for i in range(L)]
    return dict(n_layers=L, n_heads=nh, n_kv_heads=nkv, hs=hs, eps=cfg["rms_norm_eps"], rope=rope,
                emb=t["model.embed_tokens.weight"], wcls=t["model.embed_tokens.weight"],
                rms_att=layer("input_layernorm"), wq=layer("self_attn.q_proj"), wk=layer("self_attn.k_proj"),
                wv=layer("self_attn.v_proj"), wo=layer("self_attn.o_proj"),
                rms_ffn=layer("post_attention_layernorm"), w1=layer("mlp.gate_proj"), w2=layer("mlp.down_proj"),
                w3=layer("mlp.up_proj"), rms_final=t["model.norm.weight"])


def gguf_model(path, use_rope_freqs=True):
    """A GGUF of architecture llama, dequantized, with interleaved-pair RoPE."""
    g = GGUFFile(path)
    kv = lambda key: g.kv["llama." + key]
    nh, dim = int(kv("attention.head_count")), int(kv("embedding_length"))
    hs = dim // nh
    assert int(kv("rope.dimension_count")) == hs
    freqs = float(kv("rope.freq_base")) ** (-np.arange(0, hs, 2) / hs)
    if use_rope_freqs:
        freqs = freqs / g.array64("rope_freqs.weight")

    def rope(x, pos):
        """Adjacent pairs (x[2i], x[2i+1]) rotated by pos * freqs[i]."""
        z = x.reshape(-1, hs // 2, 2)
        z = (z[..., 0] + 1j * z[..., 1]) * np.exp(1j * pos * freqs)
        return np.stack([z.real, z.imag], axis=-1).reshape(-1)

    L = int(kv("block_count"))
    layer = lambda name: [g.array64(f"blk.{i}.{name}.weight") for i in range(L)]
    emb = g.array64("token_embd.weight")
    return dict(n_layers=L, n_heads=nh, n_kv_heads=int(kv("attention.head_count_kv")), hs=hs,
                eps=float(kv("attention.layer_norm_rms_epsilon")), rope=rope, emb=emb,
                wcls=g.array64("output.weight") if "output.weight" in g.tensors else emb,
                rms_att=layer("attn_norm"), wq=layer("attn_q"), wk=layer("attn_k"), wv=layer("attn_v"),
                wo=layer("attn_output"), rms_ffn=layer("ffn_norm"), w1=layer("ffn_gate"), w2=layer("ffn_down"),
                w3=layer("ffn_up"), rms_final=g.array64("output_norm.weight"))


# --- The forward pass (Llama's, as in tests/reference_forward.py)

class Llama:
    def __init__(self, w):
        self.w, self.keys, self.values = w, [[] for _ in range(w["n_layers"])], [[] for _ in range(w["n_layers"])]

    def rmsnorm(self, x, weight):
        return x / np.sqrt(np.mean(x * x) + self.w["eps"]) * weight

    def forward(self, token, pos):
        """Logits for `token` at `pos`; positions come in order 0, 1, 2, ..."""
        w = self.w
        hs, nh, nkv = w["hs"], w["n_heads"], w["n_kv_heads"]
        x = w["emb"][token].copy()
        for l in range(w["n_layers"]):
            h = self.rmsnorm(x, w["rms_att"][l])
            q = w["rope"](w["wq"][l] @ h, pos).reshape(nh, hs)
            self.keys[l].append(w["rope"](w["wk"][l] @ h, pos).reshape(nkv, hs))
            self.values[l].append((w["wv"][l] @ h).reshape(nkv, hs))
            keys, vals = np.array(self.keys[l]), np.array(self.values[l])  # (pos+1, nkv, hs)
            out = np.empty((nh, hs))
            for head in range(nh):
                kvh = head // (nh // nkv)  # query heads share key/value heads in consecutive groups
                s = keys[:, kvh] @ q[head] / np.sqrt(hs)
                p = np.exp(s - s.max())
                out[head] = (p / p.sum()) @ vals[:, kvh]
            x = x + w["wo"][l] @ out.reshape(-1)
            h = self.rmsnorm(x, w["rms_ffn"][l])
            g = w["w1"][l] @ h
            x = x + w["w2"][l] @ (g / (1.0 + np.exp(-g)) * (w["w3"][l] @ h))
        return w["wcls"] @ self.rmsnorm(x, w["rms_final"])


def run(w, tokens, n_greedy):
    """Logits at every position of tokens, then greedy ids and each step's top-2 margin."""
    m, logits = Llama(w), []
    for pos, tok in enumerate(tokens):
        logits.append(m.forward(tok, pos))
    ids, margins, lg = [], [], logits[-1]
    for k in range(n_greedy):
        top = np.argsort(-lg, kind="stable")[:2]
        ids.append(int(top[0]))
        margins.append(float(lg[top[0]] - lg[top[1]]))
        if k + 1 < n_greedy:
            lg = m.forward(ids[-1], len(tokens) + k)
    return logits, ids, margins


def write_logits(path, name, source, logits, ids, margins):
    rows, biggest = [], 0.0
    for pos in sorted(POSITIONS):
        lg = logits[pos]
        biggest = max(biggest, float(np.abs(lg).max()))
        for i in sorted(set(range(0, len(lg), EVERY)) | set(np.argsort(-lg, kind="stable")[:4].tolist())):
            rows.append("%d %d %.9g" % (pos, i, lg[i]))
    lines = ["# reference logits from tests/reference_llama3.py (NumPy float64) for %s: %s" % (name, source),
             "# the model: python3 tests/make_llama3_model.py DIR && python3 export.py OUT.gguf --hf DIR%s"
             % (" --type q8_0" if "q8_0" in name else ""),
             "# max |logit| %.6g (all %d ids at positions %s); ids: every %dth and the 4 highest"
             % (biggest, len(logits[0]), ",".join(map(str, sorted(POSITIONS))), EVERY),
             "# greedy %d: %s" % (len(ids), " ".join(map(str, ids))),
             "# greedy margins: %s" % " ".join("%.4g" % m for m in margins),
             "model %s" % name,
             "tokens %d %s" % (len(TOKENS), " ".join(map(str, TOKENS)))] + rows
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d bytes): greedy %s, smallest margin %.3g" % (path, os.path.getsize(path), ids, min(margins)))


def export(folder, out, out_type):
    p = subprocess.run([PYTHON, os.path.join(ROOT, "export.py"), out, "--hf", folder, "--type", out_type],
                       capture_output=True, text=True)
    if p.returncode:
        sys.exit("reference_llama3.py: export.py failed: " + p.stderr.strip())


def main(argv):
    models = [a for a in argv if not a.startswith("--")]
    tmp = tempfile.mkdtemp(prefix="reference_llama3.")
    try:
        folder = os.path.join(tmp, "llama3-random")
        p = subprocess.run([PYTHON, os.path.join(HERE, "make_llama3_model.py"), folder] + models[:1])
        if p.returncode:
            return 1
        f32, q8 = os.path.join(tmp, "f32.gguf"), os.path.join(tmp, "q8_0.gguf")
        export(folder, f32, "f32")
        export(folder, q8, "q8_0")

        hf = run(hf_model(folder), TOKENS, N_GREEDY)
        gg = run(gguf_model(f32), TOKENS, N_GREEDY)
        scale = max(float(np.abs(lg).max()) for lg in hf[0])
        diff = max(float(np.abs(a - b).max()) for a, b in zip(hf[0], gg[0])) / scale
        print("Hugging Face route vs F32 GGUF route: max |diff| / max |logit| = %.3g; greedy %s" %
              (diff, "same" if hf[1] == gg[1] else "DIFFERS"))
        if not diff < 2e-9 or hf[1] != gg[1]:
            print("reference_llama3.py: the F32 export does not compute what the Hugging Face folder does")
            return 1

        if "--report" in argv:
            for label, w in (("rope_freqs ignored", gguf_model(f32, use_rope_freqs=False)),
                             ("q/k rows left in Hugging Face's order", unpermuted(gguf_model(f32), folder))):
                other = run(w, TOKENS, N_GREEDY)
                d = max(float(np.abs(a - b).max()) for a, b in zip(hf[0], other[0]))
                print("%s: logits move by up to %.3g; greedy %s" % (label, d, other[1]))
            q = run(gguf_model(q8), TOKENS, N_GREEDY)
            d = max(float(np.abs(a - b).max()) for a, b in zip(hf[0], q[0]))
            print("Q8_0 export vs F32: logits differ by up to %.3g" % d)
            return 0

        write_logits(os.path.join(HERE, "logits_llama3_f32.txt"), "llama3-random f32",
                     "the Hugging Face folder's float32 weights", *hf)
        write_logits(os.path.join(HERE, "logits_llama3_q8_0.txt"), "llama3-random q8_0",
                     "the Q8_0 export's weights, dequantized", *run(gguf_model(q8), TOKENS, N_GREEDY))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unpermuted(w, folder):
    """The GGUF model with q and k rows as Hugging Face stores them (a converter
    that forgot to reorder them), for --report."""
    t = read_safetensors(os.path.join(folder, "model.safetensors"))
    w = dict(w)
    w["wq"] = [t[f"model.layers.{i}.self_attn.q_proj.weight"] for i in range(w["n_layers"])]
    w["wk"] = [t[f"model.layers.{i}.self_attn.k_proj.weight"] for i in range(w["n_layers"])]
    return w


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
