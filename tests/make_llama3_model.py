#!/usr/bin/python3
"""A random-weight model of Llama 3.2's shape, as a Hugging Face folder, for the tests.

    /usr/bin/python3 tests/make_llama3_model.py OUTDIR [MODELS_DIR]

Writes OUTDIR/config.json, OUTDIR/model.safetensors (float32), and copies of
MODELS_DIR/llama3/tokenizer.json and tokenizer_config.json (Llama 3.2's tokenizer,
128,256 tokens; MODELS_DIR defaults to the repository's models/ folder). Everything Llama 3.2 1B has that matters to a converter and a
forward pass, shrunk: RoPE theta 500000 with rope_scaling of type llama3 (factor 32,
low_freq_factor 1, high_freq_factor 4, original context 8192, as 1B and 3B have),
a context of 131072, grouped-query attention (4 query heads of 16, 2 key/value
heads), tied embeddings (no lm_head.weight), the full vocabulary. dim 64, hidden
192, 2 layers: 8.2M parameters, almost all in the embedding.

q_proj and k_proj are in Hugging Face's layout: a forward pass over this folder
rotates each head's two halves (rotate_half), as transformers does, and a
converter to GGUF must reorder their rows into adjacent pairs.

The values come from numpy's PCG64 with a fixed seed, so the folder is the same
bytes every time (tests/reference_llama3.py's expected logits depend on it). The
scales are chosen so that the model is not degenerate: an embedding of std 0.1 and
an output norm of about 4 make logits of std about 3 (not flat); each layer's
update outweighs the token's own embedding, so greedy decoding does not just
repeat the last token; and projections of std 1/sqrt(fan_in) keep attention
scores of order 1, so positions (and RoPE) matter.
"""

import json
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODELS = os.path.join(HERE, "..", "models")
SEED = 37  # of seeds 1-119, one whose greedy steps (F32 and Q8_0) are all 0.19 or more from a tie

DIM, HIDDEN, LAYERS, HEADS, KV_HEADS, VOCAB = 64, 192, 2, 4, 2, 128256
HEAD_DIM = DIM // HEADS

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": DIM,
    "intermediate_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "num_key_value_heads": KV_HEADS,
    "head_dim": HEAD_DIM,
    "vocab_size": VOCAB,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": True,
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],  # as the instruct model's config has it: a list
    "hidden_act": "silu",
    "attention_bias": False,
    "mlp_bias": False,
    "torch_dtype": "float32",
}


def weights():
    """Hugging Face name -> float32 array, in a fixed order."""
    rng = np.random.default_rng(SEED)

    def normal(shape, std, mean=0.0):
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(std) + np.float32(mean))

    w = {"model.embed_tokens.weight": normal((VOCAB, DIM), 0.1)}
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = normal(DIM, 0.1, 1.0)
        w[p + "self_attn.q_proj.weight"] = normal((q, DIM), DIM ** -0.5)
        w[p + "self_attn.k_proj.weight"] = normal((kv, DIM), DIM ** -0.5)
        w[p + "self_attn.v_proj.weight"] = normal((kv, DIM), DIM ** -0.5)
        w[p + "self_attn.o_proj.weight"] = normal((DIM, q), q ** -0.5)
        w[p + "post_attention_layernorm.weight"] = normal(DIM, 0.1, 1.0)
        w[p + "mlp.gate_proj.weight"] = normal((HIDDEN, DIM), DIM ** -0.5)
        w[p + "mlp.up_proj.weight"] = normal((HIDDEN, DIM), DIM ** -0.5)
        w[p + "mlp.down_proj.weight"] = normal((DIM, HIDDEN), HIDDEN ** -0.5)
    w["model.norm.weight"] = normal(DIM, 0.5, 4.0)
    return w


def write_safetensors(path, tensors):
    """safetensors: a little-endian u64 header length, a JSON header {name: {dtype,
    shape, data_offsets}} padded with spaces to a multiple of 8, then the data."""
    header, offset = {}, 0
    for name, a in tensors.items():
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for a in tensors.values():
            f.write(a.astype("<f4", copy=False).tobytes())


def main(argv):
    if len(argv) not in (1, 2):
        print("usage: make_llama3_model.py OUTDIR [MODELS_DIR]", file=sys.stderr)
        return 1
    out = argv[0]
    tokenizer_dir = os.path.join(argv[1] if len(argv) > 1 else DEFAULT_MODELS, "llama3")
    try:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(CONFIG, f, indent=2)
            f.write("\n")
        write_safetensors(os.path.join(out, "model.safetensors"), weights())
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(out, name))
    except OSError as e:
        print(f"make_llama3_model.py: {e.filename}: {e.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
