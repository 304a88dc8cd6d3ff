#!/usr/bin/python3
"""Writes tests/chat_template_ids.txt: the token ids of Llama 2 chat dialogs as
Meta's reference chat_completion (facebookresearch/llama, generation.py)
builds them, made here with SentencePiece itself, for test_all.c to hold
run.c's encode_dialog to.

    /usr/bin/python3 tests/make_chat_cases.py [path/to/tokenizer.model]

The rule, restated from Meta's code: the system prompt is folded into the
first user message as B_SYS + system + E_SYS + message; each finished
exchange is encode(f"{B_INST} {user.strip()} {E_INST} {reply.strip()} ",
bos=True, eos=True); the last user message is
encode(f"{B_INST} {user.strip()} {E_INST}", bos=True, eos=False).

Output: per dialog, a line "dialog NAME" then the system prompt and the
messages as hex (one "system HEX" line, "-" for none, then "message HEX"
lines), then "ids ..." with the expected ids.
"""

import os
import sys

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
B_INST, E_INST = "[INST]", "[/INST]"
B_SYS, E_SYS = "<<SYS>>\n", "\n<</SYS>>\n\n"

DIALOGS = [
    ("three-turns-with-system", "You are a helpful assistant. Answer briefly.",
     ["What is the capital of France?", "Paris.", "And of Italy?", "Rome, of course!", "Thanks. Which is bigger?"]),
    ("two-turns-no-system", None,
     ["Tell me a joke.", "Why did the llama cross the road? To get to the other slide.", "Another one, please."]),
    ("whitespace-and-unicode", "  Be kind.  \n",
     ["  Hello there!  \n", "\n Hi! 🦙 How can I help?  ", "Café au lait, s'il vous plaît\t"]),
    ("one-turn", "System text", ["Only one question?"]),
    # Python's str.strip(), which Meta's code uses, takes Unicode whitespace too: NBSP, U+3000,
    # U+2003, U+2028, U+0085 and the separators \x1c-\x1f among them.
    ("python-whitespace", "\u3000Be brief.\u2028",
     ["\u00a0\x1cHello\u0085", "\u2003Hi!\x1f ", "\x1d Bye \u3000\u2003\u00a0"]),
    # A NUL byte is text like any other: the turn goes on after it.
    ("nul-in-turn", None, ["Hi\x00 there", "Hello\x00!", "Bye\x00"]),
]


def meta_dialog_ids(sp, system, messages):
    if system is not None:
        messages = [B_SYS + system + E_SYS + messages[0]] + messages[1:]
    ids = []
    for user, reply in zip(messages[::2], messages[1::2]):
        ids += [sp.bos_id()] + sp.encode(f"{B_INST} {user.strip()} {E_INST} {reply.strip()} ") + [sp.eos_id()]
    ids += [sp.bos_id()] + sp.encode(f"{B_INST} {messages[-1].strip()} {E_INST}")
    return ids


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "models", "tokenizer.model")
    sp = spm.SentencePieceProcessor(model_file=model)
    lines = ["# made by tests/make_chat_cases.py with SentencePiece %s on the Llama 2 tokenizer" % spm.__version__]
    for name, system, messages in DIALOGS:
        lines.append("dialog " + name)
        lines.append("system " + (system.encode().hex() if system is not None else "-"))
        lines += ["message " + m.encode().hex() for m in messages]
        lines.append("ids " + " ".join(map(str, meta_dialog_ids(sp, system, messages))))
    with open(os.path.join(HERE, "chat_template_ids.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote tests/chat_template_ids.txt: %d dialogs" % len(DIALOGS), file=sys.stderr)


if __name__ == "__main__":
    main()
