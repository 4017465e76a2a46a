"""Markdown to safe HTML, on the server: markdown-it-py with raw HTML off, code
highlighted by Pygments (classes, not inline styles, so the CSP holds), math kept as
TeX source in `.math` elements for the browser's KaTeX (chat/markdown_math.py), then
nh3 as the last word on what may reach a browser.

A code block longer than HIGHLIGHT_MAX_CHARS is shown plain: Pygments' time grows with
the code (and some lexers backtrack), and an answer may be a 200 kB block.

Rendering takes up to a couple of seconds for an answer at its cap: it happens once,
when an answer is saved (chat.models.Answer.save), off any event loop."""

import nh3
from django.conf import settings
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

from .markdown_math import math_plugin

_formatter = HtmlFormatter(nowrap=True)

# About 20 ms of Pygments for Python on this machine's cores; past it, plain text.
HIGHLIGHT_MAX_CHARS = 20_000


def _highlight(code: str, lang: str, _attrs) -> str:
    if len(code) > HIGHLIGHT_MAX_CHARS:
        return ""  # markdown-it escapes the code itself
    try:
        lexer = get_lexer_by_name(lang) if lang else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    return highlight(code, lexer, _formatter)


_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
_md.enable(["table", "strikethrough"])
_md.use(math_plugin)

_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "del",
    "code",
    "pre",
    "span",
    "div",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "a",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
}
_ATTRIBUTES = {
    "a": {"href", "title"},
    "span": {"class", "data-display"},
    "div": {"class", "data-display"},
    "code": {"class"},
    "pre": {"class"},
}


# Said under a text longer than an answer may be (older rows; text recovered after a
# crash): only the first ANSWER_MAX_CHARS characters are rendered.
CUT_NOTE = "<p><em>The rest of this text is not shown: it is longer than an answer may be.</em></p>"


def render(text: str) -> str:
    cut = len(text) > settings.ANSWER_MAX_CHARS
    html = _md.render(text[: settings.ANSWER_MAX_CHARS]) + (CUT_NOTE if cut else "")
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
