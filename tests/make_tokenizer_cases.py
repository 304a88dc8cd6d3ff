#!/usr/bin/python3
"""Writes tests/tokenizer_cases.tsv: the ids SentencePiece itself gives for
many strings on the Llama 2 tokenizer, for test_all.c to hold tokenizer.c to.

    /usr/bin/python3 tests/make_tokenizer_cases.py [path/to/tokenizer.model [OUT.tsv]]

With tok512.model (stories260K's tokenizer) and tests/tokenizer_cases_tok512.tsv,
the same cases on a vocabulary that keeps SentencePiece's default
remove_extra_whitespaces (leading and trailing spaces dropped, runs collapsed),
which the Llama 2 tokenizer turns off: the whitespace cases tell the two apart.

Needs Debian's python3-sentencepiece. Each line of the output is
    name <TAB> input as hex <TAB> ids, <s> first <TAB> decoded text as hex
Input is hex so that newlines, tabs and invalid UTF-8 survive the file.
The decoded text is SentencePiece's decode of the ids with control bytes below
0x20 (other than \\t \\n \\v \\f \\r) and 0x7F removed, since run.c never
prints those.
"""

import os
import sys

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))

CASES = [
    ("ascii-hello", b"Hello world"),
    ("ascii-sentence", b"Once upon a time, there was a little girl named Lily."),
    ("empty", b""),
    ("one-space", b" "),
    ("leading-spaces", b"   leading"),
    ("trailing-spaces", b"trailing   "),
    ("repeated-spaces", b"a  b   c    d"),
    ("spaces-around", b"  hello  world  "),
    ("newline", b"\n"),
    ("newlines", b"line one\nline two\n\nline four"),
    ("crlf", b"x\r\ny"),
    ("tabs", b"a\tb\t\tc"),
    ("digits", b"1234567890 3.14159 2024-11-27"),
    ("punctuation", b"Hello, world! (Yes?) [no] {maybe}; 'quote' \"double\" - em \xe2\x80\x94 dash..."),
    ("accent-composed", "café naïve résumé".encode()),
    ("accent-decomposed", "cafe\u0301 nai\u0308ve".encode()),
    ("german", "Größenmaßstäbe für Übergänge".encode()),
    ("cjk", "饕餮是中国古代神话中的怪物".encode()),
    ("japanese", "こんにちは世界、カタカナ".encode()),
    ("korean", "안녕하세요".encode()),
    ("emoji", "🦙 llamas 🦙🦙 and 👩‍👩‍👧 family".encode()),
    ("mixed-acceptance", "café 饕餮 🦙".encode()),
    ("long-word-64", b"Pneumonoultramicroscopicsilicovolcanoconiosisantidisestablishment"[:64]),
    ("repeated-char-64", b"a" * 64),
    ("literal-bos", b"<s>"),
    ("literal-eos", b"</s>"),
    ("literal-bos-inside", b"Hello <s> world </s>"),
    ("literal-unk", b"<unk>"),
    ("literal-byte-piece", b"<0x41>"),
    ("meta-space-literal", "\u2581".encode()),
    ("meta-space-word", "\u2581hello\u2581world".encode()),
    ("invalid-ff", b"\xff"),
    ("invalid-continuation", b"a\x80b"),
    ("invalid-surrogate", b"\xed\xa0\x80"),
    ("invalid-overlong", b"\xc0\xaf"),
    ("invalid-too-big", b"\xf4\x90\x80\x80"),
    ("invalid-truncated", b"abc\xe4\xbd"),
    ("invalid-truncated-mid", b"\xe4\xbdx\xf0\x9f\xa6"),
    ("replacement-char", "\ufffd".encode()),
    ("control-bytes", b"a\x01b\x1fc\x7fd"),
    ("code", b"int main(void) {\n    return 0;\n}\n"),
    ("url", b"https://example.com/path?q=1&r=2#frag"),
    ("chat-template", b"[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi there [/INST]"),
    ("uppercase", b"THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG"),
    ("rare-script", "ᚠᚢᚦᚨᚱᚲ ꙮ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢".encode()),
    # SentencePiece's normalizer: only ASCII spaces are collapsed while reading; trailing space
    # symbols, U+2581 included, are dropped at the end when remove_extra_whitespaces is on.
    ("ws-double-space", b"Once  upon a time"),
    ("ws-only-spaces", b"   "),
    ("ws-spaces-and-tab", b" \t  x \t  "),
    ("ws-newline-spaces", b"a\nb  \n c  "),
    ("ws-meta-space-runs", "\u2581\u2581a\u2581\u2581 b  \u2581".encode()),
    ("ws-meta-space-alone", "\u2581".encode()),
    ("ws-ideographic-space", "a\u3000\u3000b  \u00a0 c".encode()),
    ("ws-invalid-between", b"  \xff  \xfe  "),
    ("long-text-4000-tokens", (b"The quick brown fox jumps over the lazy dog. " * 400) + "Ünïcödé 饕 🦙 end.".encode()),
]


def keep_printable(data):
    return bytes(b for b in data if not ((b < 0x20 and b not in b"\t\n\v\f\r") or b == 0x7F))


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "models", "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=model)
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "tokenizer_cases.tsv")
    with open(out_path, "w") as f:
        f.write("# made by tests/make_tokenizer_cases.py with SentencePiece %s on %s\n"
                % (spm.__version__, "the Llama 2 tokenizer" if sp.vocab_size() == 32000 else os.path.basename(model)))
        for name, data in CASES:
            ids = [sp.bos_id()] + sp.encode(data)  # bytes in: invalid UTF-8 reaches SentencePiece as is
            decoded = sp.decode(ids[1:]).encode("utf-8")
            f.write("%s\t%s\t%s\t%s\n" % (name, data.hex(), " ".join(map(str, ids)), keep_printable(decoded).hex()))
    print("wrote %s: %d cases" % (out_path, len(CASES)), file=sys.stderr)


if __name__ == "__main__":
    main()
