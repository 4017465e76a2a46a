"""What a model sees of a conversation: earlier turns, then the new message,
trimmed from the oldest turn so that it fits the model's context window."""

from panels.providers import ChatMessage

from .models import Message, Run

SYSTEM_PROMPT = (
    "You are a helpful, accurate assistant. Answer clearly and concisely; "
    "use Markdown for lists and code."
)
# Conservative: real tokenizers average closer to 4 characters a token in English.
CHARS_PER_TOKEN = 3


def conversation_messages(
    message: Message, context_length: int, max_tokens: int, system_prompt: str | None = None
) -> tuple[ChatMessage, ...]:
    system_prompt = system_prompt or SYSTEM_PROMPT
    budget = max(0, (context_length - max_tokens) * CHARS_PER_TOKEN - len(system_prompt))
    earlier = (
        Message.objects.filter(conversation_id=message.conversation_id, pk__lt=message.pk)
        .select_related("run")
        .prefetch_related("run__answers")
        .order_by("-pk")
    )
    turns: list[ChatMessage] = [ChatMessage("user", message.content)]
    used = len(message.content)
    for previous in earlier:
        run = getattr(previous, "run", None)
        answer = run.final_answer if run and run.status == Run.Status.DONE else None
        if answer is None or not answer.text:
            continue  # a failed turn carries no answer worth repeating
        size = len(previous.content) + len(answer.text)
        if used + size > budget:
            break
        turns[:0] = [ChatMessage("user", previous.content), ChatMessage("assistant", answer.text)]
        used += size
    return (ChatMessage("system", system_prompt), *turns)
