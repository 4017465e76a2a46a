"""What a model sees of a conversation: system prompts, then the newest turns that fit."""

from chat.engine.context import SYSTEM_PROMPT, fit_given_messages, fit_messages
from panels.providers import ChatMessage


def _given(*pairs: tuple[str, str]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in pairs]


def test_a_seat_prompt_and_the_callers_system_messages_both_reach_the_model():
    given = _given(("system", "Answer in French."), ("user", "Capital of Italy?"))
    messages = fit_given_messages(given, 4096, 256, "You are a careful geographer.")
    assert messages[0] == ChatMessage(
        "system", "You are a careful geographer.\n\nAnswer in French."
    )
    assert messages[1:] == (ChatMessage("user", "Capital of Italy?"),)


def test_the_callers_system_messages_alone_replace_the_default():
    given = _given(("system", "Be terse."), ("user", "Hi"))
    messages = fit_given_messages(given, 4096, 256)
    assert messages[0] == ChatMessage("system", "Be terse.")


def test_with_no_system_prompt_at_all_the_default_is_used():
    messages = fit_given_messages(_given(("user", "Hi")), 4096, 256)
    assert messages[0] == ChatMessage("system", SYSTEM_PROMPT)


def test_the_oldest_turns_go_first_and_no_reply_is_left_without_its_question():
    long = "x" * 3000
    given = _given(
        ("user", "first question " + long),
        ("assistant", "first answer"),
        ("user", "second question"),
        ("assistant", "second answer"),
        ("user", "third question"),
    )
    # 256 tokens of context beside 0 for the answer: ~768 characters, minus the prompt.
    messages = fit_given_messages(given, 1400, 400, "S")
    roles = [m.role for m in messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert messages[1].content == "second question"
    assert messages[-1].content == "third question"


def test_the_question_is_kept_even_when_it_alone_is_too_long():
    messages = fit_given_messages(_given(("user", "y" * 50_000)), 2048, 1024)
    assert [m.role for m in messages] == ["system", "user"]


def test_a_conversations_turns_are_fitted_by_the_same_rule():
    message = "And now?"
    turns = [("newer question", "newer answer"), ("older question " + "z" * 5000, "older answer")]
    messages = fit_messages(message, turns, 2048, 1024, "Seat prompt.")
    assert messages == (
        ChatMessage("system", "Seat prompt."),
        ChatMessage("user", "newer question"),
        ChatMessage("assistant", "newer answer"),
        ChatMessage("user", "And now?"),
    )
