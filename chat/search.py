"""Searching a user's conversations by their text: the questions asked and every answer.

The database does the searching with its own full-text index: PostgreSQL's
`SearchVector`/`SearchRank`/`SearchHeadline`; on SQLite an FTS5 table, `chat_search`,
that triggers keep in step with messages and answers (migration 0014). Whatever a
person types is read as plain words: no character of it is ever the query language
(FTS5's quotes, `*`, `NEAR`, `-`; `%` or NUL), so a query finds something or nothing,
never an error.

A hit's snippet is the stored text escaped, with `<mark>` around the matched words:
the database marks them with a nonce drawn for each search, which no text can spell.
"""

import re
import secrets
from dataclasses import dataclass

from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank, SearchVector
from django.db import connection
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from .models import Answer, Conversation, Message

QUERY_MAX_CHARS = 200
HITS_MAX = 30
# The answers a person reads: the seats' and the final one (a judge writes JSON, a
# router a plan). The SQLite triggers of migration 0014 index the same roles.
SEARCHED_ROLES = ("seat", "synthesizer")
# Words as FTS5's default tokenizer (unicode61) splits them: letters and digits.
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Hit:
    conversation: Conversation
    message_id: int
    # "question", or the answer's role (final, seat, judge…) with its model
    source: str
    snippet: SafeString
    rank: float

    @property
    def url(self) -> str:
        return f"{self.conversation.get_absolute_url()}#turn-{self.message_id}"


def words(query: str) -> list[str]:
    """The words of what was typed; the rest (quotes, `%`, `*`, NUL, …) is not searched for."""
    return _WORD.findall(query[:QUERY_MAX_CHARS].replace("\x00", " "))[:16]


def search(user, query: str) -> list[Hit]:
    """The user's own visible conversations' questions and answers matching every word
    of the query, best first."""
    found = words(query)
    if not found:
        return []
    start, stop = f"\x02{secrets.token_hex(8)}[", f"]{secrets.token_hex(8)}\x03"
    if connection.vendor == "postgresql":
        rows = _postgresql(user, found, start, stop)
    else:
        rows = _sqlite(user, found, start, stop)
    conversations = Conversation.objects.in_bulk({row[0] for row in rows})
    hits = [
        Hit(conversations[cid], mid, source, _marked(text, start, stop), rank)
        for cid, mid, source, text, rank in rows
        if cid in conversations
    ]
    hits.sort(key=lambda hit: hit.rank, reverse=True)
    return hits[:HITS_MAX]


def _marked(text: str, start: str, stop: str) -> SafeString:
    """Escape the snippet, then turn the database's nonce markers (and only those) into
    <mark> tags."""
    out = escape(text).replace(escape(start), "<mark>").replace(escape(stop), "</mark>")
    return mark_safe(out)  # noqa: S308 - escaped above; the only tags are our <mark>s


def _source(role: str | None, model_name: str | None) -> str:
    if role is None:
        return "question"
    label = "final answer" if role == Answer.Role.SYNTHESIZER else "answer"
    return f"{label} · {model_name}" if model_name else label


def _sqlite(user, found: list[str], start: str, stop: str) -> list[tuple]:
    # Each word a quoted FTS5 string: nothing typed can be an operator.
    match = " ".join('"' + word.replace('"', '""') + '"' for word in found)
    sql = """
        SELECT c.id, m.id, a.role, a.model_name,
               snippet(chat_search, 0, %s, %s, '…', 16), -bm25(chat_search)
        FROM chat_search
        JOIN chat_message m ON m.id = chat_search.message_id
        JOIN chat_conversation c ON c.id = m.conversation_id
        LEFT JOIN chat_answer a ON chat_search.rowid > 0 AND a.id = chat_search.rowid
        WHERE chat_search MATCH %s AND c.owner_id = %s AND NOT c.hidden
        ORDER BY bm25(chat_search)
        LIMIT %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [start, stop, match, user.pk, HITS_MAX])
        return [
            (cid, mid, _source(role, model), text, rank)
            for cid, mid, role, model, text, rank in cursor.fetchall()
        ]


def _postgresql(user, found: list[str], start: str, stop: str) -> list[tuple]:
    query = SearchQuery(" ".join(found), search_type="plain", config="simple")

    def headline(field: str) -> SearchHeadline:
        return SearchHeadline(
            field, query, start_sel=start, stop_sel=stop, config="simple", max_words=30
        )

    own = {"conversation__owner": user, "conversation__hidden": False}
    messages = (
        Message.objects.filter(**own)
        .annotate(vector=SearchVector("content", config="simple"))
        .filter(vector=query)
        .annotate(rank=SearchRank("vector", query), snippet=headline("content"))
        .order_by("-rank")
        .values_list("conversation_id", "id", "snippet", "rank")[:HITS_MAX]
    )
    answers = (
        Answer.objects.filter(role__in=SEARCHED_ROLES)
        .filter(**{f"run__message__{key}": value for key, value in own.items()})
        .annotate(vector=SearchVector("text", config="simple"))
        .filter(vector=query)
        .annotate(rank=SearchRank("vector", query), snippet=headline("text"))
        .order_by("-rank")
        .values_list(
            "run__message__conversation_id",
            "run__message_id",
            "role",
            "model_name",
            "snippet",
            "rank",
        )[:HITS_MAX]
    )
    rows = [(cid, mid, "question", text, rank) for cid, mid, text, rank in messages]
    rows += [
        (cid, mid, _source(role, model), text, rank)
        for cid, mid, role, model, text, rank in answers
    ]
    return rows
