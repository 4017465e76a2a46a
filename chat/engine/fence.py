"""Untrusted text made safe to put in a prompt.

The panel's answers (and a question, a tool's output) are untrusted data: a model
may have been talked into writing "ignore previous instructions", or into closing
its block early and writing instructions after it. So each is put inside a block
whose tags carry a nonce drawn afresh for every prompt (`<answer-7f3a9c label="A">`
… `</answer-7f3a9c>`): an answer was written before the nonce existed, so it cannot
close its block. Before it is wrapped, untrusted text is folded (NFKC, so
`＜/answer＞` becomes `</answer>`; invisible characters such as zero-width spaces and
bidi controls removed) and every block tag left in it is made inert, the real one
included, so that not even a lenient small model reads an early end.
"""

import re
import secrets
import unicodedata
from functools import lru_cache

_KINDS = "answer|analysis|question|checks"
_TAG = re.compile(rf"<\s*(/?)\s*({_KINDS})", re.IGNORECASE)
# In our own prompt text: a tag to give this prompt's nonce.
_OUR_TAG = re.compile(rf"<(/?)({_KINDS})\b")


@lru_cache(maxsize=4096)
def _keeps_its_form(char: str) -> bool:
    """Superscript and subscript digits and signs, and fractions: NFKC would change
    what they mean (x² → x2, ½ → 1⁄2), and none of them can spell a tag."""
    decomposition = unicodedata.decomposition(char)
    if decomposition.startswith(("<super>", "<sub>")):
        return not chr(int(decomposition.split()[1], 16)).isalpha()
    return decomposition.startswith("<fraction>")


def fold(text: str) -> str:
    """Untrusted text as a model would read it: look-alike characters folded to their
    plain form (NFKC: fullwidth ＜ is <, mathematical 𝐚 is a) and invisible format
    characters (zero-width spaces and joiners, bidi controls, soft hyphens, tag
    characters: Unicode category Cf) removed, so none can hide a tag."""
    if text.isascii():
        return text
    out: list[str] = []
    pending: list[str] = []
    for char in text:
        if unicodedata.category(char) == "Cf":
            continue
        if _keeps_its_form(char):
            out.append(unicodedata.normalize("NFKC", "".join(pending)))
            out.append(char)
            pending = []
        else:
            pending.append(char)
    out.append(unicodedata.normalize("NFKC", "".join(pending)))
    return "".join(out)


def neutralise(text: str) -> str:
    """Untrusted text made safe to put inside a block: folded, then every block tag in
    it (with or without a nonce) made inert, so it cannot close its block."""
    return _TAG.sub(lambda m: f"‹{m.group(1)}{m.group(2)}", fold(text))


class Fence:
    """The block tags of one prompt: <answer-7f3a9c>, with a nonce drawn for it.

    Six hex digits: short enough that a 0.5B model copies the tag faithfully, and a
    one-in-16-million guess for an answer written before the nonce was drawn."""

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(3)

    def tags(self, text: str) -> str:
        """Our own (trusted) prompt text with this prompt's tags: <answer → <answer-nonce."""
        return _OUR_TAG.sub(lambda m: f"<{m.group(1)}{m.group(2)}-{self.nonce}", text)

    def block(self, kind: str, text: str, label: str | None = None) -> str:
        """Untrusted text in a block of its own."""
        name = f"{kind}-{self.nonce}"
        attribute = f' label="{neutralise(label).replace(chr(34), "”")}"' if label else ""
        return f"<{name}{attribute}>\n{neutralise(text)}\n</{name}>"
