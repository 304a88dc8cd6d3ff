#!/usr/bin/python3
"""Writes the Llama 3 (byte-level BPE) tokenizer references, for test_all.c to hold
tokenizer.c to:

    /usr/bin/python3 tests/make_bpe_cases.py [models/llama3]

  tests/tokenizer_cases_llama_bpe.tsv  llama.cpp's 46 test texts for its llama-bpe vocabulary
                                       (kept below, LLAMA_CPP_CASES), with the ids of the
                                       reference, which must equal llama.cpp's: any difference
                                       stops the script.
  tests/tokenizer_cases_llama3.tsv     our own texts (CASES), probing the pre-tokenizer's
                                       regex and the BPE.

The reference is tests/bpe_reference.mjs: @lenml/tokenizers, a port of Hugging Face
transformers.js's tokenizers (`npm ci --prefix tests` installs it, pinned), on
models/llama3/tokenizer.json (Meta's Llama 3.2 tokenizer: 128,000 BPE tokens and 256
special tokens). It needs node; NODE=path overrides `node`.

Each line of the output, as in tests/tokenizer_cases.tsv:
    name <TAB> input as hex <TAB> ids, <|begin_of_text|> (128000) first <TAB> decoded text as hex
The decoded text is the reference's decode of the ids (special tokens decode to nothing),
with control bytes below 0x20 (other than \\t \\n \\v \\f \\r) and 0x7F removed, since
run.c never prints those.

Input that is not valid UTF-8 reaches the reference as text made by our C tokenizer's rule:
each byte that does not begin a valid UTF-8 character (strictly: no overlong forms, no
surrogates, nothing above U+10FFFF) becomes one U+FFFD, and decoding continues with the next
byte. (Python's errors="replace" would replace maximal subparts instead: one U+FFFD for a
truncated sequence.)

Texts that hold "<|eot_id|>" and the like are encoded with split_special: the markers are
text there, not special tokens, as with transformers' split_special_tokens=True.

Whitespace: the pre-tokenizer's regex says \\s. Hugging Face's `tokenizers` runs it with
Oniguruma, where \\s is Unicode's White_Space, as in llama.cpp (unicode_set_whitespace);
the reference runs it as a JavaScript regex, whose \\s also takes U+FEFF and leaves out
U+0085. The CASES must not hold those two (the script checks). The cases named
whitespace-def-* do, and are made by the reference with --unicode-white-space, which
rewrites \\s in the regex as White_Space (U+180E is white space in neither, and is there
to show it); the script also reports where the unmodified reference would differ.
"""

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REFERENCE = os.path.join(HERE, "bpe_reference.mjs")
BOS = 128000

# From llama.cpp (https://github.com/ggml-org/llama.cpp, MIT License):
# models/ggml-vocab-llama-bpe.gguf.inp and .out, as of commit 07e4351c (2025-05-30). The
# texts are separated there by "\n__ggml_vocab_test__\n"; the .out lines are the ids
# llama.cpp's tests/test-tokenizer-0.cpp expects, without BOS.
LLAMA_CPP_CASES = [
    ('ied 4 \xbd months', "1142 220 19 220 27154 4038"),
    ('\xc4pfel', "88075 16276 301"),
    ('', ""),
    (' ', "220"),
    ('  ', "256"),
    ('   ', "262"),
    ('\t', "197"),
    ('\n', "198"),
    ('\n\n', "271"),
    ('\n\n\n', "1432"),
    ('\t\n', "1602"),
    ('Hello world', "9906 1917"),
    (' Hello world', "22691 1917"),
    ('Hello World', "9906 4435"),
    (' Hello World', "22691 4435"),
    (' Hello World!', "22691 4435 0"),
    ('Hello, world!', "9906 11 1917 0"),
    (' Hello, world!', "22691 11 1917 0"),
    (' this is \U0001f999.cpp', "420 374 11410 99 247 13 11055"),
    ('w048 7tuijk dsdfhu', "86 23904 220 22 83 2005 42908 11729 3013 17156"),
    (
        '\u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441'
        '\u043a\u0438',
        "79862 102118 13373 64571 34694 3114 112203 80112"
    ),
    (
        '\u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6'
        '\u1785\u1781\u179b\u1785\u17c1\u1789',
        "21549 222 98629 241 45358 233 21549 237 45358 224 21549 244 21549 115 21549 253 "
        "45358 223 21549 253 21549 95 98629 227 21549 223 21549 249 21549 227 45358 223 "
        "21549 231"
    ),
    (
        '\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f (multiple emojis concatenated'
        ') \u2705 (only emoji that has its own token)',
        "9468 248 222 320 8416 8 27623 114 102470 9468 234 104 31643 320 36773 100166 98634 "
        "8 26602 227 320 3323 43465 430 706 1202 1866 4037 8"
    ),
    ('Hello', "9906"),
    (' Hello', "22691"),
    ('  Hello', "220 22691"),
    ('   Hello', "256 22691"),
    ('    Hello', "262 22691"),
    ('    Hello\n    Hello', "262 22691 198 262 22691"),
    (' (', "320"),
    ('\n =', "198 284"),
    ("' era", "6 11639"),
    (
        "Hello, y'all! How are you \U0001f601 ?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151"
        '\u5929\uff5e',
        "9906 11 379 65948 0 2650 527 499 27623 223 949 37046 101067 19000 23182 102301 "
        "9263 18136 16 36827 21909"
    ),
    ('!!!!!!', "17523 3001"),
    ('3', "18"),
    ('33', "1644"),
    ('333', "8765"),
    ('3333', "8765 18"),
    ('33333', "8765 1644"),
    ('333333', "8765 8765"),
    ('3333333', "8765 8765 18"),
    ('33333333', "8765 8765 1644"),
    ('333333333', "8765 8765 8765"),
    ('C\u1eeda Vi\u1ec7t', "34 91163 101798"),
    (' discards', "2624 2402"),
    (
        '\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636'
        '\u200d\U0001f32b\ufe0f (multiple emojis concatenated) \u2705 \U0001f999\U0001f999 '
        '3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 \u1780\u17b6\u1793'
        '\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785\U0001f601 ?'
        '\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= \u043d\u0435'
        "\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 '"
        '\'\'\'\'\'```````""""......!!!!!!?????? I\'ve been \'told he\'s there, \'RE you su'
        "re? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL",
        "198 4815 15073 66597 8004 1602 2355 79772 11187 9468 248 222 320 8416 8 27623 114 "
        "102470 9468 234 104 31643 320 36773 100166 98634 8 26602 227 11410 99 247 9468 99 "
        "247 220 18 220 1644 220 8765 220 8765 18 220 8765 1644 220 8765 8765 220 8765 8765 "
        "18 220 8765 8765 1644 220 18 13 18 220 18 497 18 220 18 1131 18 220 21549 222 "
        "98629 241 45358 233 21549 237 45358 224 21549 244 21549 115 21549 253 45358 223 "
        "21549 253 21549 95 98629 227 76460 223 949 37046 101067 19000 23182 102301 9263 "
        "18136 16 36827 21909 56560 54337 19175 102118 13373 64571 34694 3114 112203 80112 "
        "3436 106451 14196 14196 74694 3089 3089 29249 17523 3001 27708 7801 358 3077 1027 "
        "364 83 820 568 596 1070 11 364 793 499 2771 30 364 44 539 2771 358 3358 1304 433 "
        "11 364 35 499 1093 1063 15600 30 1226 6 43712 264 64966 43"
    ),
]

# Our own texts: (name, bytes, split_special). Names must stay short (test_all.c's check ids).
PYTHON_SNIPPET = (b"def fib(n):\n    if n < 2:\n        return n\n\treturn fib(n - 1) + fib(n - 2)\n\n\n"
                  b"class A:\n    def __init__(self):\n        self.x = {'a': [1, 2, 3]}  # comment\n")
C_SNIPPET = (b"#include <stdio.h>\n\nint main(int argc, char **argv) {\n    for (int i = 0; i < argc; i++)\n"
             b"        printf(\"%s\\n\", argv[i]);\n\treturn 0;\n}\n")
JSON_SNIPPET = b'{"name": "llama", "ids": [128000, 9906], "nested": {"ok": true, "pi": 3.14}, "e": null}\n'
LONG_TEXT = (("The quick brown fox jumps over the lazy dog; it's 1,234,567 times faster!  "
              "Ünïcödé, 饕餮 and 🦙 too.\n\tNext line\r\n") * 30).encode()[:2000]

CASES = [
    ("empty", b"", False),
    # whitespace: runs of spaces before a word, trailing, alone
    ("space1-word", b" hello", False),
    ("space2-word", b"  hello", False),
    ("space3-word", b"   hello", False),
    ("space4-word", b"    hello", False),
    ("space5-word", b"     hello", False),
    ("spaces-between", b"a b  c   d    e     f", False),
    ("trailing-space1", b"hello ", False),
    ("trailing-space3", b"hello   ", False),
    ("only-spaces-1", b" ", False),
    ("only-spaces-5", b"     ", False),
    ("only-spaces-17", b" " * 17, False),
    ("tab", b"a\tb", False),
    ("tabs-leading", b"\t\tindented\tx", False),
    ("tabs-trailing", b"x\t\t\t", False),
    ("newline", b"a\nb", False),
    ("newlines-2", b"a\n\nb", False),
    ("newlines-4", b"a\n\n\n\nb", False),
    ("newline-trailing", b"end\n", False),
    ("crlf", b"line one\r\nline two\r\n", False),
    ("crlf-double", b"a\r\n\r\nb", False),
    ("cr-alone", b"a\rb", False),
    ("cr-only", b"\r", False),
    ("cr-double", b"a\r\rb\r", False),
    ("lf-cr", b"a\n\rb", False),
    ("mixed-ws-text", b" \t \n  x", False),
    ("mixed-ws-text-2", b"\n   \tfoo bar", False),
    ("space-newline-space", b"a \n b", False),
    ("spaces-newlines-spaces", b"a  \n\n  b", False),
    ("space-crlf-space", b"x \r\n y", False),
    ("spaces-then-newline-end", b"x   \n", False),
    ("newline-spaces-end", b"x\n   ", False),
    ("vt-ff", b"a\x0bb\x0cc \x0b\x0c d", False),
    ("nbsp", "a\u00a0b \u00a0 c\u00a0".encode(), False),
    ("ideographic-space", "x\u3000\u3000y\u3000".encode(), False),
    ("em-space", "a \u2003 b\u2003\u2003c".encode(), False),
    ("line-separators", "a\u2028b\u2029c \u2028 d".encode(), False),
    # digits: the regex takes them three at a time
    ("digits-1", b"7", False),
    ("digits-2", b"42", False),
    ("digits-3", b"123", False),
    ("digits-4", b"1234", False),
    ("digits-5", b"12345", False),
    ("digits-6", b"123456", False),
    ("digits-7", b"1234567", False),
    ("digits-letters", b"abc123def4567", False),
    ("digits-mixed", b"x1y22z333w4444 v55555", False),
    ("digits-punct", b"3.14159 1,000,000 2024-11-27 -42 +7", False),
    ("digits-space-digits", b"1 2  3   456 7890", False),
    ("digits-arabic-indic", "\u0661\u0662\u0663\u0664 \u0665".encode(), False),
    ("digits-other-n", "\u00bd \u00be \u00b2\u00b3 \u2162\u216b".encode(), False),
    # contractions, any case, and apostrophes that are not one
    ("contraction-upper", b"DON'T I'M", False),
    ("contraction-mixed", b"they'RE We'Ve You'LL He'D it'S", False),
    ("contraction-lower", b"it's don't we're I've you'll he'd I'm", False),
    ("contraction-start", b"'s", False),
    ("contraction-double-quote", b"''s", False),
    ("contraction-start-upper", b"'S 'T 'RE 'VE 'M 'LL 'D", False),
    ("apostrophe-alone", b"'", False),
    ("apostrophe-word", b"'hello' 'x o'clock rock 'n' roll", False),
    ("apostrophe-space", b"don 't we ' re", False),
    ("apostrophe-trailing", b"dogs' don't'", False),
    ("apostrophe-french", "l'\u00e9t\u00e9 aujourd'hui".encode(), False),
    ("apostrophe-curly", "it\u2019s \u2018quoted\u2019".encode(), False),
    ("apostrophe-digits", b"'90s '123", False),
    # punctuation runs and newlines
    ("punct-newline", b"...\n", False),
    ("punct-newlines", b"?!?!\n\nNext", False),
    ("punct-crlf", b"---\r\n===\r\n\r\n", False),
    ("punct-braces", b"}}\n\n\n{", False),
    ("punct-space-newline", b";)\n \nok", False),
    ("punct-mixed", b"Hello, world! (Yes?) [no] {maybe}; 'quote' \"double\" \xe2\x80\x94 dash...", False),
    ("punct-space-run", b" !!! ??? ... ,,,", False),
    # emoji
    ("emoji", "\U0001f600\U0001f603\U0001f604 \U0001f999 llama".encode(), False),
    ("emoji-skin-tone", "\U0001f44d\U0001f3fd \U0001f44b\U0001f3ff".encode(), False),
    ("emoji-zwj-family", "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466".encode(), False),
    ("emoji-zwj-flag", "\U0001f3f3\ufe0f\u200d\U0001f308 \U0001f1eb\U0001f1f7\U0001f1e9\U0001f1ea".encode(), False),
    ("emoji-keycap", "1\ufe0f\u20e3 #\ufe0f\u20e3 \u2764\ufe0f".encode(), False),
    # scripts
    ("cjk", "\u9955\u992e\u662f\u4e2d\u56fd\u53e4\u4ee3\u795e\u8bdd\u4e2d\u7684\u602a\u7269".encode(), False),
    ("japanese", "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c\u3001\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a".encode(), False),
    ("thai", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a \u0e22\u0e34\u0e19\u0e14\u0e35\u0e15\u0e49\u0e2d\u0e19\u0e23\u0e31\u0e1a".encode(), False),
    ("devanagari", "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e, \u0939\u093f\u0928\u094d\u0926\u0940".encode(), False),
    ("arabic", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645".encode(), False),
    ("hebrew", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd".encode(), False),
    ("korean", "\uc548\ub155\ud558\uc138\uc694 \uc138\uacc4".encode(), False),
    ("greek", "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u03ba\u03cc\u03c3\u03bc\u03b5".encode(), False),
    ("cyrillic", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!".encode(), False),
    ("accent-composed", "caf\u00e9 na\u00efve r\u00e9sum\u00e9 Gr\u00f6\u00dfenma\u00dfst\u00e4be".encode(), False),
    ("accent-decomposed", "cafe\u0301 nai\u0308ve Gro\u0308\u00dfe".encode(), False),
    ("vietnamese", "C\u1eeda Vi\u1ec7t".encode(), False),  # whole words of the vocabulary (ignore_merges)
    ("vietnamese-sentence", "Ti\u1ebfng Vi\u1ec7t c\u00f3 d\u1ea5u".encode(), False),
    ("combining-marks-alone", "\u0301\u0308 a\u0301\u0301\u0301".encode(), False),
    # long words that are not in the vocabulary
    ("long-word", b"Pneumonoultramicroscopicsilicovolcanoconiosis", False),
    ("long-word-nonsense", b"xqzjvkwpqzxjvkqqqzzzjjj", False),
    ("repeated-char-64", b"a" * 64, False),
    ("repeated-char-space", b" " + b"z" * 40, False),
    # code and structured text
    ("code-python", PYTHON_SNIPPET, False),
    ("code-c", C_SNIPPET, False),
    ("url", b"https://example.com/path/to?q=1&r=two#frag http://x.org", False),
    ("json", JSON_SNIPPET, False),
    ("markdown", b"# Title\n\n- item *one*\n- item **two**\n\n| a | b |\n|---|---|\n| 1 | 2 |\n", False),
    ("long-text-2000", LONG_TEXT, False),
    # literal special-token markers are text here (split_special)
    ("marker-eot", b"<|eot_id|>", True),
    ("marker-bos", b"<|begin_of_text|>", True),
    ("marker-inside", b"Hello<|eot_id|>world <|start_header_id|>user<|end_header_id|>\n\n", True),
    ("marker-broken", b"<|eot_id| <|begin_of_text <|>", True),
    # invalid UTF-8: one U+FFFD for each byte that does not begin a valid character
    ("invalid-continuation", b"a\x80b", False),
    ("invalid-continuations", b"\x80\xbf\x80 x", False),
    ("invalid-truncated-2", b"x\xc3", False),
    ("invalid-truncated-3", b"abc\xe4\xbd", False),
    ("invalid-truncated-4", b"\xf0\x9f\xa6x", False),
    ("invalid-truncated-mid", b"\xe4\xbdx\xf0\x9f\xa6 \xf0\x9f", False),
    ("invalid-overlong-2", b"\xc0\xaf", False),
    ("invalid-overlong-3", b"\xe0\x80\xaf \xc1\xbf", False),
    ("invalid-overlong-4", b"\xf0\x80\x80\xaf", False),
    ("invalid-surrogate", b"\xed\xa0\x80", False),
    ("invalid-surrogate-pair", b"\xed\xa0\xbd\xed\xb8\x80", False),
    ("invalid-too-big", b"\xf4\x90\x80\x80", False),
    ("invalid-f5-ff", b"\xf5 \xf6 \xf7 \xf8 \xf9 \xfa \xfb \xfc \xfd \xfe \xff", False),
    ("invalid-ff-run", b"\xff\xfe\xff", False),
    ("invalid-in-word", "h\u00e9llo".encode() + b"\xff" + "w\u00f6rld".encode(), False),
    ("invalid-before-space", b"a\xff b \xfe", False),
    ("replacement-char", "\ufffd \ufffdx".encode(), False),
    ("control-bytes", b"a\x01b\x1fc\x7fd\x00e", False),
]

# Characters whose white-space status differs between JavaScript's \s and Unicode's
# White_Space (U+0085, U+FEFF), and one that is white space in neither (U+180E): made with
# the reference's --unicode-white-space.
WHITESPACE_DEF_CASES = [
    ("whitespace-def-nel-contraction", "\u0085's", False),
    ("whitespace-def-nel-after-spaces", "  \u0085", False),
    ("whitespace-def-nel-punct", "\u0085.Hello", False),
    ("whitespace-def-nel-before-word", "a \u0085hello\u0085", False),
    ("whitespace-def-nel-runs", "x\u0085\u0085y \u0085\n", False),
    ("whitespace-def-bom-contraction", "\ufeff's", False),
    ("whitespace-def-bom-after-spaces", "  \ufeff", False),
    ("whitespace-def-bom-punct", "\ufeff.world", False),
    ("whitespace-def-bom-start", "\ufeffHello \ufeff\ufeff world", False),
    ("whitespace-def-mvs", "x\u180e\u180ey \u180e's  \u180e", False),
]


def strict_utf8_text(data):
    """The text our C tokenizer reads from `data`: each byte that does not begin a valid
    UTF-8 character becomes one U+FFFD."""
    out, i = [], 0
    while i < len(data):
        b = data[i]
        n = 1 if b < 0x80 else 2 if 0xC2 <= b <= 0xDF else 3 if 0xE0 <= b <= 0xEF else 4 if 0xF0 <= b <= 0xF4 else 0
        try:
            ch = data[i:i + n].decode("utf-8") if n else ""  # strict: no overlongs, surrogates
        except UnicodeDecodeError:
            ch = ""
        if n and len(ch) == 1 and len(data[i:i + n]) == n:
            out.append(ch)
            i += n
        else:
            out.append("\ufffd")
            i += 1
    return "".join(out)


def keep_printable(data):
    return bytes(b for b in data if not ((b < 0x20 and b not in b"\t\n\v\f\r") or b == 0x7F))


def reference(args, requests):
    """Runs tests/bpe_reference.mjs on the requests; returns its answers."""
    node = os.environ.get("NODE", "node")
    lines = "".join(json.dumps(r) + "\n" for r in requests)
    try:
        p = subprocess.run([node, REFERENCE] + args, input=lines, capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("make_bpe_cases.py: cannot run %s (install node and npm, then: npm ci --prefix tests)" % node)
    if p.returncode != 0:
        sys.exit("make_bpe_cases.py: the reference failed (did `npm ci --prefix tests` run?):\n" + p.stderr)
    answers = [json.loads(line) for line in p.stdout.split("\n")[:-1]]  # not splitlines: U+2028
    assert len(answers) == len(requests)
    return answers


def write_cases(path, header, cases, answers):
    with open(path, "w") as f:
        f.write(header)
        for (name, data), answer in zip(cases, answers):
            ids = [BOS] + answer["ids"] if answer["ids"][:1] != [BOS] else answer["ids"]
            decoded = keep_printable(answer["decoded"].encode("utf-8"))
            f.write("%s\t%s\t%s\t%s\n" % (name, data.hex(), " ".join(map(str, ids)), decoded.hex()))
    print("wrote %s: %d cases" % (os.path.relpath(path), len(cases)), file=sys.stderr)


def main():
    model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "models", "llama3")
    args = [os.path.join(model_dir, "tokenizer.json"), os.path.join(model_dir, "tokenizer_config.json")]
    lock = json.load(open(os.path.join(HERE, "package-lock.json")))
    version = lock["packages"]["node_modules/@lenml/tokenizers"]["version"]
    made_by = "# made by tests/make_bpe_cases.py with @lenml/tokenizers %s on models/llama3/tokenizer.json\n" % version

    # llama.cpp's cases: the reference must give llama.cpp's ids.
    answers = reference(args, [{"text": t, "add_special_tokens": True} for t, _ in LLAMA_CPP_CASES])
    bad = [(i, t, want, a["ids"]) for i, ((t, want), a) in enumerate(zip(LLAMA_CPP_CASES, answers))
           if a["ids"] != [BOS] + [int(x) for x in want.split()]]
    for i, text, want, got in bad:
        print("llama-bpe-%02d %r: llama.cpp %s, reference %s" % (i + 1, text, want, got[1:]), file=sys.stderr)
    if bad:
        sys.exit("make_bpe_cases.py: the reference and llama.cpp differ on %d of llama.cpp's cases" % len(bad))
    for (text, _), a in zip(LLAMA_CPP_CASES, answers):
        assert a["decoded"] == text, text
    header = made_by + (
        "# llama.cpp's test texts for its llama-bpe vocabulary, from llama.cpp\n"
        "# (https://github.com/ggml-org/llama.cpp, MIT License): models/ggml-vocab-llama-bpe.gguf.inp\n"
        "# and .out, commit 07e4351c; the reference's ids equal llama.cpp's .out (BOS added here)\n")
    cases = [("llama-bpe-%02d" % (i + 1), t.encode()) for i, (t, _) in enumerate(LLAMA_CPP_CASES)]
    write_cases(os.path.join(HERE, "tokenizer_cases_llama_bpe.tsv"), header, cases, answers)

    # Our cases.
    names = [c[0] for c in CASES + WHITESPACE_DEF_CASES]
    assert len(set(names)) == len(names) and all(len(n) < 64 for n in names)
    requests = []
    for name, data, split_special in CASES:
        text = strict_utf8_text(data)
        assert not set(text) & {"\u0085", "\ufeff"}, name  # see WHITESPACE_DEF_CASES
        requests.append({"text": text, "add_special_tokens": True, "split_special": split_special})
    answers = reference(args, requests)
    # The rewrite of \s must change nothing where JavaScript and Unicode agree.
    assert reference(args + ["--unicode-white-space"], requests) == answers
    for (name, data, _), request, a in zip(CASES, requests, answers):
        assert a["ids"][0] == BOS and a["decoded"] == request["text"], name
        assert all(i < BOS for i in a["ids"][1:]), name  # no special token inside

    ws_requests = [{"text": t, "add_special_tokens": True} for _, t, _ in WHITESPACE_DEF_CASES]
    ws_answers = reference(args + ["--unicode-white-space"], ws_requests)
    js_answers = reference(args, ws_requests)
    for (name, text, _), a, js in zip(WHITESPACE_DEF_CASES, ws_answers, js_answers):
        assert a["decoded"] == text, name
        if a["ids"] != js["ids"]:
            print("%s: with JavaScript's \\s the reference gives %s, with White_Space %s"
                  % (name, js["ids"][1:], a["ids"][1:]), file=sys.stderr)

    header = made_by + (
        "# marker-*: the special-token markers in the text are text (split_special); invalid-*: each\n"
        "# byte that does not begin a valid UTF-8 character reached the reference as U+FFFD;\n"
        "# whitespace-def-*: made with the reference's --unicode-white-space (\\s as Unicode's\n"
        "# White_Space, as in Hugging Face's tokenizers and llama.cpp; see make_bpe_cases.py)\n")
    cases = [(n, d) for n, d, _ in CASES] + [(n, t.encode()) for n, t, _ in WHITESPACE_DEF_CASES]
    write_cases(os.path.join(HERE, "tokenizer_cases_llama3.tsv"), header, cases, answers + ws_answers)


if __name__ == "__main__":
    main()
