#!/usr/bin/python3
"""Independent reference forward pass of Llama 2, in NumPy float64, used as a
test oracle for run.c. It reads llama2.c's legacy (v0) fp32 checkpoints and
writes expected logits for two models:

    /usr/bin/python3 tests/reference_forward.py [MODELS_DIR] [--selfcheck]

MODELS_DIR defaults to the repository's models/ folder.
Outputs: tests/logits_stories260K.txt and tests/logits_tiny_random.txt.
--selfcheck also greedy-decodes 30 tokens from stories260K and checks the text.

Written from the Llama 2 math (Meta's reference model), not from run.c.
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODELS = os.path.join(HERE, "..", "models")


def load_checkpoint(path):
    """Reads a legacy llama2.c checkpoint into a dict of float64 arrays."""
    raw = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = \
        np.frombuffer(raw, "<i4", 7).tolist()
    shared = vocab > 0              # negative vocab_size: separate classifier
    vocab = abs(vocab)
    hs = dim // n_heads             # head_size
    kv_dim = n_kv_heads * hs
    offset = 28                     # 7 int32 header

    def take(*shape):
        nonlocal offset
        n = int(np.prod(shape))
        a = np.frombuffer(raw, "<f4", n, offset).reshape(shape)
        offset += 4 * n
        return a.astype(np.float64)

    L = n_layers
    w = dict(dim=dim, hidden=hidden, n_layers=L, n_heads=n_heads,
             n_kv_heads=n_kv_heads, vocab=vocab, seq_len=seq_len, hs=hs)
    w["emb"] = take(vocab, dim)
    w["rms_att"] = take(L, dim)
    w["wq"] = take(L, dim, dim)          # (out, in): y = W @ x
    w["wk"] = take(L, kv_dim, dim)
    w["wv"] = take(L, kv_dim, dim)
    w["wo"] = take(L, dim, dim)
    w["rms_ffn"] = take(L, dim)
    w["w1"] = take(L, hidden, dim)       # gate
    w["w2"] = take(L, dim, hidden)       # down
    w["w3"] = take(L, hidden, dim)       # up
    w["rms_final"] = take(dim)
    take(seq_len * hs // 2)              # legacy freq_cis_real, unused
    take(seq_len * hs // 2)              # legacy freq_cis_imag, unused
    w["wcls"] = w["emb"] if shared else take(vocab, dim)
    assert offset == len(raw), (path, offset, len(raw))
    return w


def rmsnorm(x, weight):
    # x / sqrt(mean(x^2) + eps) * weight
    return x / np.sqrt(np.mean(x * x) + 1e-5) * weight


def rope(x, pos, hs):
    """Rotates interleaved pairs (x[2i], x[2i+1]) of each head by the angle
    pos * 10000^(-2i/hs), as complex multiplication: (a + ib) * e^(i*angle)."""
    pairs = x.reshape(-1, hs // 2, 2)                 # (heads, hs/2, 2)
    z = pairs[..., 0] + 1j * pairs[..., 1]
    freqs = 10000.0 ** (-np.arange(0, hs, 2) / hs)    # theta_i = 10000^(-2i/hs)
    z = z * np.exp(1j * pos * freqs)
    return np.stack([z.real, z.imag], axis=-1).reshape(x.shape)


class Llama:
    def __init__(self, w):
        self.w = w
        L, kv_dim = w["n_layers"], w["n_kv_heads"] * w["hs"]
        self.k_cache = np.zeros((L, w["seq_len"], kv_dim))
        self.v_cache = np.zeros((L, w["seq_len"], kv_dim))

    def forward(self, token, pos):
        """Logits for `token` at position `pos`; positions must come in order
        0, 1, 2, ... since keys and values are cached."""
        w = self.w
        hs, nh, nkv = w["hs"], w["n_heads"], w["n_kv_heads"]
        group = nh // nkv                      # query heads per kv head (GQA)
        x = w["emb"][token].copy()
        for l in range(w["n_layers"]):
            # --- attention ---
            h = rmsnorm(x, w["rms_att"][l])
            q = rope(w["wq"][l] @ h, pos, hs).reshape(nh, hs)
            self.k_cache[l, pos] = rope(w["wk"][l] @ h, pos, hs)
            self.v_cache[l, pos] = w["wv"][l] @ h
            keys = self.k_cache[l, :pos + 1].reshape(pos + 1, nkv, hs)
            vals = self.v_cache[l, :pos + 1].reshape(pos + 1, nkv, hs)
            out = np.empty((nh, hs))
            for head in range(nh):
                kvh = head // group
                # scores_t = q . k_t / sqrt(hs) for t = 0..pos (causal)
                s = keys[:, kvh] @ q[head] / np.sqrt(hs)
                p = np.exp(s - s.max())
                p /= p.sum()                   # softmax
                out[head] = p @ vals[:, kvh]   # sum_t p_t v_t
            x = x + w["wo"][l] @ out.reshape(-1)
            # --- SwiGLU feed-forward ---
            h = rmsnorm(x, w["rms_ffn"][l])
            g = w["w1"][l] @ h
            silu = g / (1.0 + np.exp(-g))      # z * sigmoid(z)
            x = x + w["w2"][l] @ (silu * (w["w3"][l] @ h))
        return w["wcls"] @ rmsnorm(x, w["rms_final"])


def write_logits(out_path, model_name, tokens, positions, pick_ids, w):
    """Runs `tokens` through the model; at each of `positions` records the
    logits of the ids chosen by pick_ids(logits)."""
    m = Llama(w)
    lines = ["# reference logits from tests/reference_forward.py (NumPy "
             "float64) for %s" % model_name,
             "model %s" % model_name,
             "tokens %d %s" % (len(tokens), " ".join(map(str, tokens)))]
    for pos, tok in enumerate(tokens):
        logits = m.forward(tok, pos)
        if pos in positions:
            for i in pick_ids(logits):
                lines.append("%d %d %.9g" % (pos, i, logits[i]))
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d bytes)" % (out_path, os.path.getsize(out_path)))


def load_vocab(path):
    """llama2.c tokenizer file: int32 max_len, then per token
    float32 score, int32 len, len bytes."""
    raw = open(path, "rb").read()
    off, pieces = 4, []
    while off < len(raw):
        n = int(np.frombuffer(raw, "<i4", 1, off + 4)[0])
        pieces.append(raw[off + 8: off + 8 + n])
        off += 8 + n
    return pieces


def selfcheck(models):
    """Greedy decoding of 30 tokens from BOS on stories260K."""
    w = load_checkpoint(os.path.join(models, "stories260K.bin"))
    pieces = load_vocab(os.path.join(models, "tok512.bin"))
    m, tok, ids = Llama(w), 1, []
    for pos in range(30):
        tok = int(np.argmax(m.forward(tok, pos)))
        ids.append(tok)
    text = b""
    for t in ids:
        p = pieces[t]
        if p.startswith(b"<0x") and p.endswith(b">") and len(p) == 6:
            p = bytes([int(p[3:5], 16)])       # byte-fallback token
        text += p
    text = text.decode("utf-8", "replace").lstrip(" ")
    print("greedy ids:", ids)
    print("greedy text: %r" % text)
    want = "Once upon a time, there was a little girl named Lily."
    ok = text.startswith(want)
    print("selfcheck", "PASSED" if ok else "FAILED")
    return ok


def main(argv):
    args = [a for a in argv if a != "--selfcheck"]
    models = os.path.abspath(args[0] if args else DEFAULT_MODELS)

    # stories260K: BOS + 47 fixed random ids; all 512 logits at 5 positions.
    w = load_checkpoint(os.path.join(models, "stories260K.bin"))
    tokens = [1] + np.random.default_rng(260).integers(3, 512, 47).tolist()
    write_logits(os.path.join(HERE, "logits_stories260K.txt"),
                 "stories260K.bin", tokens, {0, 1, 7, 23, 47},
                 lambda lg: range(len(lg)), w)

    # llama-2-tiny-random: BOS + 31 ids; at 3 positions, every id that is a
    # multiple of 16 plus the 8 highest-scoring ids.
    w = load_checkpoint(os.path.join(models, "llama-2-tiny-random.bin"))
    tokens = [1] + np.random.default_rng(32000).integers(3, 32000, 31).tolist()
    write_logits(os.path.join(HERE, "logits_tiny_random.txt"),
                 "llama-2-tiny-random.bin", tokens, {0, 5, 31},
                 lambda lg: sorted(set(range(0, len(lg), 16))
                                   | set(np.argsort(-lg)[:8].tolist())), w)

    # Mean negative log-likelihood of the same 48 tokens, for run.c's -m ppl, by
    # llama.cpp's llama-perplexity rule: whole windows of `window` tokens (the
    # rest dropped), each starting at position 0 with <s> in place of its first
    # token, and only the predictions of its second half scored.
    w = load_checkpoint(os.path.join(models, "stories260K.bin"))
    tokens = [1] + np.random.default_rng(260).integers(3, 512, 47).tolist()
    lines = ["# mean NLL (nats) of the tokens of logits_stories260K.txt under stories260K.bin, by window size:",
             "# window, tokens scored, mean NLL; from tests/reference_forward.py (NumPy float64)"]
    for window in (48, 20, 7):
        nll, count = 0.0, 0
        for start in range(0, len(tokens) - window + 1, window):
            chunk = [1] + tokens[start + 1:start + window]
            m = Llama(w)
            for pos in range(window - 1):
                logits = m.forward(chunk[pos], pos)
                if pos < window // 2:
                    continue
                top = logits.max()
                nll += np.log(np.exp(logits - top).sum()) + top - logits[chunk[pos + 1]]
                count += 1
        lines.append("%d %d %.9g" % (window, count, nll / count))
    with open(os.path.join(HERE, "nll_stories260K.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")

    if "--selfcheck" in argv and not selfcheck(models):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
