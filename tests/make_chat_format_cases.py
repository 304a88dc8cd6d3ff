#!/usr/bin/python3
"""Writes tests/chat_format_cases.txt: dialogs rendered by the real chat templates of
tests/chat_templates/ (see the README.md there) as Hugging Face's apply_chat_template renders
them, and the token ids of the rendered text, for test_all.c to hold run.c's chat formats to.

    /usr/bin/python3 tests/make_chat_format_cases.py [models/llama3]

Rendering: jinja2 (Debian's python3-jinja2) with the environment of transformers'
apply_chat_template: a sandbox with trim_blocks and lstrip_blocks, the loopcontrols
extension, the globals raise_exception and strftime_now, a tojson filter, and the variables
messages, tools=None, documents=None, add_generation_prompt=True, bos_token, eos_token and
unk_token. strftime_now reads a fixed date, DATE, written in the output's "# date" line, so
that the output does not depend on the day it is made.

Tokenizing: the rendered text is encoded with add_special_tokens=False by
tests/bpe_reference.mjs (@lenml/tokenizers; `npm ci --prefix tests` installs it), so the
special tokens written in it (<s>, </s>, <|eot_id|>, ...) become their ids, as the template's
authors intend. The llama3* formats use the Llama 3 vocabulary (models/llama3/tokenizer.json);
the others the Llama 2 vocabulary (Hugging Face's Llama 2 tokenizer, made by the reference
from llama-tokenizer-js's copy of its vocabulary and merges: the same 32,000 pieces as
models/tokenizer.model), on which [INST], <|im_start|> and the like are plain text. Llama 2 cases are also encoded with SentencePiece (python3-sentencepiece on
models/tokenizer.model: each piece of text between special tokens on its own, with its dummy
prefix); the script reports any difference between the two.

Output, per case:
    case NAME
    format FORMAT
    template tests/chat_templates/FILE.jinja
    vocab llama2|llama3
    system HEX            (or "system -": no system message)
    message HEX           (one a message: user, assistant, user, ..., ending with a user turn)
    rendered HEX          (the template's output)
    ids ...               (no BOS added beyond what the template writes)
"""

import datetime
import json
import os
import re
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_bpe_cases import reference  # noqa: E402  (the node reference tokenizer, run the same way)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# What strftime_now sees as "now": a day of one digit, to show %d's zero.
DATE = datetime.datetime(2025, 1, 9, 12, 0, 0)

# format, template file, vocabulary
FORMATS = [
    ("llama2", "llama2.jinja", "llama2"),
    ("llama3", "llama3.jinja", "llama3"),
    ("llama3.1", "llama3.1.jinja", "llama3"),
    ("llama3.2", "llama3.2.jinja", "llama3"),
    ("mistral", "mistral.jinja", "llama2"),
    ("mistral-v1", "mistral-v1.jinja", "llama2"),
    ("mistral-v3", "mistral-v3.jinja", "llama2"),
    ("mistral-v3-tekken", "mistral-v3-tekken.jinja", "llama2"),
    ("mistral-v7", "mistral-v7.jinja", "llama2"),
    ("zephyr", "zephyr.jinja", "llama2"),
    ("chatml", "chatml.jinja", "llama2"),
]

# name, system prompt (None: none), messages (user, assistant, ..., user)
DIALOGS = [
    ("one-turn-system", "You are a helpful assistant.", ["What is the capital of France?"]),
    ("one-turn", None, ["Tell me a joke."]),
    ("three-turns-system", "You are a helpful assistant. Answer briefly.",
     ["What is the capital of France?", "Paris.", "And of Italy?", "Rome, of course!", "Thanks. Which is bigger?"]),
    ("three-turns", None,
     ["Hello!", "Hi! How can I help?", "Tell me a joke.",
      "Why did the llama cross the road? To get to the other slide.", "Another one, please."]),
    ("whitespace", "  Be kind.  \n",
     ["  Hello there!  \n", "\n Hi! How can I help?  ", " \n\tBye\t\n"]),
    ("newlines-inside", "Line one.\nLine two.\n\nLine four.",
     ["First line\nsecond line", "A\n\nB", "1.\n2.\n3."]),
    ("unicode", "R\u00e9ponds en fran\u00e7ais \U0001f1eb\U0001f1f7.",
     ["Caf\u00e9? \u9955\u992e \U0001f999", "Oui \u2014 \u5f53\u7136\u3002", "\u00dcn\u00efc\u00f6d\u00e9 \u0928\u092e\u0938\u094d\u0924\u0947"]),
    # str.strip() and Jinja's trim take Unicode white space, and \x1c-\x1f too.
    ("python-whitespace", "\u3000Be brief.\u2028",
     ["\u00a0\x1cHello\u2003", "\u2003Hi!\x1f ", "\x1d Bye \u3000\u2003\u00a0"]),
]


# Mistral v3's templates put the system prompt into the last user message. run.c keeps a
# chat's KV cache from turn to turn, so it cannot move the prompt there each turn; it puts it
# into the first user message instead, as llama.cpp's own v3 layout does. For dialogs where
# the two differ (a system prompt and more than one user turn), the case is rendered by the
# template with "loop.last" read as "loop.first" and marked "layout system-first".
SYSTEM_FIRST = {"mistral-v3", "mistral-v3-tekken"}


def system_first(template_text):
    old = "loop.last and system_message is defined"
    assert template_text.count(old) == 1
    return template_text.replace(old, "loop.first and system_message is defined")


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def strftime_now(fmt):
    return DATE.strftime(fmt)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def environment():
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def sentencepiece_ids(sp, text, specials):
    """Special tokens as ids; each piece of text between them encoded on its own."""
    ids = []
    for piece in re.split("(%s)" % "|".join(re.escape(s) for s in specials), text):
        if piece in specials:
            ids.append(specials[piece])
        elif piece:
            ids += sp.encode(piece)
    return ids


def main():
    llama3_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "llama3")
    llama3_config = os.path.join(llama3_dir, "tokenizer_config.json")
    vocabs = {  # the reference's arguments
        "llama2": ["llama2"],
        "llama3": [os.path.join(llama3_dir, "tokenizer.json"), llama3_config],
    }
    c = json.load(open(llama3_config))
    tokens = {
        "llama2": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
        "llama3": {"bos_token": c["bos_token"], "eos_token": c["eos_token"], "unk_token": None},
    }

    env = environment()
    cases = []  # name, format, template, vocab, system, messages, rendered
    for fmt, template_file, vocab in FORMATS:
        with open(os.path.join(HERE, "chat_templates", template_file)) as f:
            text = f.read()
        template = env.from_string(text)
        for dialog, system, messages in DIALOGS:
            chat = ([{"role": "system", "content": system}] if system is not None else []) + [
                {"role": "user" if i % 2 == 0 else "assistant", "content": m} for i, m in enumerate(messages)]
            layout = "system-first" if fmt in SYSTEM_FIRST and system is not None and len(messages) > 1 else "template"
            chosen = env.from_string(system_first(text)) if layout == "system-first" else template
            try:
                rendered = chosen.render(messages=chat, tools=None, documents=None, add_generation_prompt=True,
                                         **tokens[vocab])
            except jinja2.exceptions.TemplateError:  # Mistral's first template refuses a system prompt
                if system is None:
                    raise
                continue
            if system is not None and system.strip() and system.strip().split()[0] not in rendered:
                sys.exit("make_chat_format_cases.py: %s drops the system prompt of %s" % (fmt, dialog))
            cases.append(("%s-%s" % (fmt, dialog), fmt, template_file, vocab, system, messages, rendered, layout))

    ids = {}
    for vocab, args in vocabs.items():
        chosen = [c for c in cases if c[3] == vocab]
        if vocab == "llama3":  # JavaScript's \s differs from White_Space there (see make_bpe_cases.py)
            assert not any(set(c[6]) & {"\u0085", "\ufeff"} for c in chosen)
        answers = [a["ids"] for a in reference(args, [{"text": c[6], "add_special_tokens": False} for c in chosen])]
        ids.update((c[0], a) for c, a in zip(chosen, answers))

    # SentencePiece on the Llama 2 cases, for comparison.
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(os.path.dirname(os.path.abspath(llama3_dir)), "tokenizer.model"))
    specials = {"<unk>": sp.unk_id(), "<s>": sp.bos_id(), "</s>": sp.eos_id()}
    differ = 0
    for c in cases:
        if c[3] == "llama2" and sentencepiece_ids(sp, c[6], specials) != ids[c[0]]:
            differ += 1
            print("%s: SentencePiece and the Hugging Face tokenizer differ:\n  %s\n  %s"
                  % (c[0], sentencepiece_ids(sp, c[6], specials), ids[c[0]]), file=sys.stderr)

    lock = json.load(open(os.path.join(HERE, "package-lock.json")))
    version = lock["packages"]["node_modules/@lenml/tokenizers"]["version"]
    lines = [
        "# made by tests/make_chat_format_cases.py: jinja2 %s as transformers' apply_chat_template,"
        " ids by @lenml/tokenizers %s" % (jinja2.__version__, version),
        "# date %s" % DATE.strftime("%d %b %Y"),
        "# layout system-first: the template's system prompt moved from the last user turn to the first,"
        " as run.c lays it out",
    ]
    for name, fmt, template_file, vocab, system, messages, rendered, layout in cases:
        lines += ["case " + name, "format " + fmt, "template tests/chat_templates/" + template_file, "vocab " + vocab,
                  "layout " + layout, "system " + (system.encode().hex() if system is not None else "-")]
        lines += ["message " + m.encode().hex() for m in messages]
        lines += ["rendered " + rendered.encode().hex(), "ids " + " ".join(map(str, ids[name]))]
    out = os.path.join(HERE, "chat_format_cases.txt")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s: %d cases%s" % (os.path.relpath(out), len(cases),
          ", SentencePiece differs on %d" % differ if differ else ", SentencePiece agrees on all Llama 2 ones"),
          file=sys.stderr)


if __name__ == "__main__":
    main()
