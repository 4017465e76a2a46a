"""What a model sees of a conversation: earlier turns, then the new message,
trimmed from the oldest turn so that it fits the model's context window."""

from chat.models import Message, Run
from panels.providers import ChatMessage

SYSTEM_PROMPT = (
    "You are a helpful, accurate assistant. Answer clearly and concisely; "
    "use Markdown for lists and code."
)
# Conservative: real tokenizers average closer to 4 characters a token in English.
CHARS_PER_TOKEN = 3


def earlier_turns(message: Message) -> list[tuple[str, str]]:
    """(question, final answer) of the turns before `message` on its branch (the
    versions it follows, never an edit's other versions), newest first; a failed
    turn carries no answer worth repeating and is left out."""
    return turns_of(message.parent_id)


def turns_of(last: int | None) -> list[tuple[str, str]]:
    """The turns of the branch ending at message `last` (inclusive; None: no turns),
    newest first, as earlier_turns gives them. A run being admitted has no message
    yet: it passes the message it will follow."""
    if last is None:
        return []
    conversation_id = Message.objects.filter(pk=last).values_list("conversation", flat=True)
    tree = dict(
        Message.objects.filter(conversation__in=conversation_id).values_list("pk", "parent_id")
    )
    branch: list[int] = []
    step: int | None = last
    while step is not None:
        branch.append(step)
        step = tree.get(step)
    earlier = (
        Message.objects.filter(pk__in=branch)
        .select_related("run")
        .prefetch_related("run__answers")
        .order_by("-pk")  # a message is always newer than the one it follows
    )
    turns = []
    for previous in earlier:
        run = getattr(previous, "run", None)
        answer = run.final_answer if run and run.status == Run.Status.DONE else None
        if answer is not None and answer.text:
            turns.append((previous.content, answer.text))
    return turns


def fit_messages(
    question: str,
    turns: list[tuple[str, str]],
    context_length: int,
    max_tokens: int,
    system_prompt: str | None = None,
) -> tuple[ChatMessage, ...]:
    """A conversation for one model: its earlier turns (`turns`, newest first)
    and the new question."""
    conversation = [
        ChatMessage(role, text)
        for question, answer in reversed(turns)
        for role, text in (("user", question), ("assistant", answer))
    ]
    conversation.append(ChatMessage("user", question))
    return fit(conversation, context_length, max_tokens, [system_prompt or ""])


def fit_given_messages(
    given: list[dict],
    context_length: int,
    max_tokens: int,
    system_prompt: str | None = None,
) -> tuple[ChatMessage, ...]:
    """An API caller's own conversation (`given`, ending with the question): the
    seat's system prompt, then the caller's system messages, then the turns."""
    systems = [system_prompt or ""] + [m["content"] for m in given if m["role"] == "system"]
    conversation = [ChatMessage(m["role"], m["content"]) for m in given if m["role"] != "system"]
    return fit(conversation, context_length, max_tokens, systems)


def fit(
    conversation: list[ChatMessage],
    context_length: int,
    max_tokens: int,
    systems: list[str],
) -> tuple[ChatMessage, ...]:
    """The system prompts joined into one (the default when there are none), then the
    newest messages of `conversation` (oldest first, ending with the question) that
    fit the model's context window beside `max_tokens` of answer. The question is
    always kept; a reply is never kept without the message it answers."""
    system = "\n\n".join(text for text in systems if text) or SYSTEM_PROMPT
    space = max(0, (context_length - max_tokens) * CHARS_PER_TOKEN - len(system))
    kept = [conversation[-1]]
    used = len(conversation[-1].content)
    for earlier in reversed(conversation[:-1]):
        if used + len(earlier.content) > space:
            break
        kept.append(earlier)
        used += len(earlier.content)
    kept.reverse()
    while len(kept) > 1 and kept[0].role == "assistant":
        kept.pop(0)  # its question did not fit
    return (ChatMessage("system", system), *kept)
