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
    """(question, final answer) of the turns before `message`, newest first; a failed
    turn carries no answer worth repeating and is left out."""
    earlier = (
        Message.objects.filter(conversation_id=message.conversation_id, pk__lt=message.pk)
        .select_related("run")
        .prefetch_related("run__answers")
        .order_by("-pk")
    )
    turns = []
    for previous in earlier:
        run = getattr(previous, "run", None)
        answer = run.final_answer if run and run.status == Run.Status.DONE else None
        if answer is not None and answer.text:
            turns.append((previous.content, answer.text))
    return turns


def fit_messages(
    message: Message,
    turns: list[tuple[str, str]],
    context_length: int,
    max_tokens: int,
    system_prompt: str | None = None,
) -> tuple[ChatMessage, ...]:
    """The newest turns that fit this model's context window, oldest first."""
    system_prompt = system_prompt or SYSTEM_PROMPT
    budget = max(0, (context_length - max_tokens) * CHARS_PER_TOKEN - len(system_prompt))
    kept: list[ChatMessage] = [ChatMessage("user", message.content)]
    used = len(message.content)
    for question, answer in turns:
        size = len(question) + len(answer)
        if used + size > budget:
            break
        kept[:0] = [ChatMessage("user", question), ChatMessage("assistant", answer)]
        used += size
    return (ChatMessage("system", system_prompt), *kept)


def fit_given_messages(
    given: list[dict],
    context_length: int,
    max_tokens: int,
    system_prompt: str | None = None,
) -> tuple[ChatMessage, ...]:
    """An API caller's own conversation (`given`, ending with the question): its
    system messages first (after the seat's own prompt), then the newest turns
    that fit, oldest first."""
    system = (
        "\n\n".join(
            [system_prompt]
            if system_prompt
            else [] + [m["content"] for m in given if m["role"] == "system"]
        )
        or SYSTEM_PROMPT
    )
    turns = [m for m in given if m["role"] != "system"]
    budget = max(0, (context_length - max_tokens) * CHARS_PER_TOKEN - len(system))
    kept: list[ChatMessage] = [ChatMessage(turns[-1]["role"], turns[-1]["content"])]
    used = len(turns[-1]["content"])
    for message in reversed(turns[:-1]):
        if used + len(message["content"]) > budget:
            break
        kept.insert(0, ChatMessage(message["role"], message["content"]))
        used += len(message["content"])
    return (ChatMessage("system", system), *kept)
