"""Math in answers: the TeX is found on the server, typeset in the browser.

The Markdown parser (chat/markdown.py) learns the math syntaxes here; each piece of
math becomes `<span class="math" data-display="inline">`, or `data-display="block"`
on a `<div>` (a block of its own) or a `<span>` (display math inside a paragraph),
holding the TeX source as escaped text. nh3 passes exactly that, and
static/js/reading.js hands the text to KaTeX (which builds DOM nodes, so no inline
style or script reaches the page through the sanitiser). Math that KaTeX cannot
parse stays visible as its source.

Recognised: `$…$` and `$$…$$` (mdit-py-plugins' dollarmath: `$5 and $10` stays
money), `\\(…\\)` and `\\[…\\]` (its texmath, brackets; `\\[…\\]` inside a paragraph
too), a bare `\\boxed{…}`, and what the bundled small models write once their
backslashes are lost: `[ b = \\frac{1.00}{2} ]` and `(\\boxed{0.50})`. Those two are
math only when their content holds a TeX command from a known list (`\\frac`,
`\\boxed`, `\\sqrt`, …), or, for `[ … ]` alone on its line, is an equation of
numbers, letters and operators (`[ b + (b + 1.00) = 1.10 ]`): "[see the docs]",
"[ ] a task" or "(C:\\Users)" stay text.
"""

import re

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.rules_inline import StateInline
from mdit_py_plugins.dollarmath import dollarmath_plugin
from mdit_py_plugins.texmath import texmath_plugin

# Commands that make bracketed text clearly TeX. A backslash alone is not enough:
# Windows paths and escaped characters have one too.
_TEX_COMMANDS = (
    "frac|dfrac|tfrac|boxed|sqrt|times|cdot|div|pm|mp|le|leq|ge|geq|neq|ne|approx|equiv"
    "|sum|prod|int|oint|lim|infty|partial|nabla|pi|alpha|beta|gamma|delta|Delta|theta"
    "|lambda|mu|sigma|Sigma|omega|Omega|phi|varphi|epsilon|varepsilon|rho|tau|eta"
    "|text|mathrm|mathbf|mathbb|mathcal|operatorname|left|right|binom|cdots|ldots|dots"
    "|quad|qquad|sin|cos|tan|log|ln|exp|vec|hat|bar|overline|underline|in|notin|subset"
    "|cup|cap|forall|exists|to|rightarrow|Rightarrow|implies|iff|begin|end"
)
_CLEARLY_TEX = re.compile(rf"\\(?:{_TEX_COMMANDS})(?![A-Za-z])")
_BOXED = "\\boxed{"
# Or, alone on its line between padded brackets, an equation: `[ b + (b + 1.00) = 1.10 ]`.
_EQUATION = re.compile(r" [\w .,+\-*/^()]*[\d)] ?= ?[\w .,+\-*/^()]+ ")


def _closing(src: str, start: int, opener: str, closer: str, limit: int) -> int:
    """The index of the `closer` that balances the `opener` at `start`, or -1.
    Stops at a blank line or `limit`: math never spans paragraphs."""
    depth = 0
    pos = start
    while pos < limit:
        char = src[pos]
        if char == "\\":
            pos += 2
            continue
        if char == "\n" and src.startswith("\n", pos + 1):
            return -1
        if char == opener:
            depth += 1
        elif char == closer:
            depth -= 1
            if depth == 0:
                return pos
        pos += 1
    return -1


def _push_math(state: StateInline, tex: str, display: bool) -> None:
    token = state.push("math_inline_double" if display else "math_inline", "math", 0)
    token.content = tex
    token.markup = "model"


def _model_brackets(state: StateInline, silent: bool) -> bool:
    """`[ … ]` and `( … )` whose content is clearly TeX: a model's `\\[ … \\]` and
    `\\( … \\)` with the backslashes lost. `[x](url)` and `[x][ref]` stay links."""
    src, pos = state.src, state.pos
    opener = src[pos]
    if opener not in "[(":
        return False
    closer = "]" if opener == "[" else ")"
    end = _closing(src, pos, opener, closer, state.posMax)
    if end < 0:
        return False
    tex = src[pos + 1 : end]
    # A bracket alone on its line is display math, as `\[ … \]` would be.
    alone = opener == "[" and not src[:pos].strip() and not src[end + 1 :].strip()
    clearly = _CLEARLY_TEX.search(tex) or (alone and _EQUATION.fullmatch(tex))
    if not clearly or "\n\n" in tex:
        return False
    if opener == "[" and src[end + 1 : end + 2] in ("(", "["):
        return False
    if not silent:
        _push_math(state, tex.strip(), display=alone)
    state.pos = end + 1
    return True


def _display_brackets(state: StateInline, silent: bool) -> bool:
    """`\\[ … \\]` inside a paragraph (texmath reads it only at a block's start)."""
    src, pos = state.src, state.pos
    if not src.startswith("\\[", pos):
        return False
    end = src.find("\\]", pos + 2, state.posMax)
    if end < 0:
        return False
    if not silent:
        _push_math(state, src[pos + 2 : end].strip(), display=True)
    state.pos = end + 2
    return True


def _bare_boxed(state: StateInline, silent: bool) -> bool:
    """`\\boxed{…}` written outside any math delimiters, as models end answers."""
    src, pos = state.src, state.pos
    if not src.startswith(_BOXED, pos):
        return False
    end = _closing(src, pos + len(_BOXED) - 1, "{", "}", state.posMax)
    if end < 0:
        return False
    if not silent:
        _push_math(state, src[pos : end + 1], display=False)
    state.pos = end + 1
    return True


def _render_inline(self, tokens, idx, options, env) -> str:
    return f'<span class="math" data-display="inline">{escapeHtml(tokens[idx].content)}</span>'


def _render_display(self, tokens, idx, options, env) -> str:
    # Display math inside a paragraph: a span (a div may not sit in a <p>), shown as a block.
    return f'<span class="math" data-display="block">{escapeHtml(tokens[idx].content)}</span>'


def _render_block(self, tokens, idx, options, env) -> str:
    return f'<div class="math" data-display="block">{escapeHtml(tokens[idx].content)}</div>\n'


def math_plugin(md: MarkdownIt) -> None:
    """Teach `md` every math syntax above, each rendered as one TeX-holding element."""
    texmath_plugin(md, delimiters="brackets")
    # No space inside and no digit outside the dollars: "$5 and $10" is money.
    dollarmath_plugin(
        md, allow_labels=False, allow_space=False, allow_digits=False, double_inline=True
    )
    md.inline.ruler.before("escape", "math_display_brackets", _display_brackets)
    md.inline.ruler.before("escape", "math_bare_boxed", _bare_boxed)
    md.inline.ruler.before("link", "math_model_brackets", _model_brackets)
    md.inline.add_terminator_char("(")  # else "(" hides inside a run of text
    # One rendering for every token the plugins make (texmath and dollarmath share names).
    md.add_render_rule("math_inline", _render_inline)
    md.add_render_rule("math_inline_double", _render_display)
    for name in ("math_block", "math_block_eqno", "math_block_label"):
        md.add_render_rule(name, _render_block)
