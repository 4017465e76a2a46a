"""Searching conversations by their text: questions and answers, the owner's only.

Runs on SQLite (FTS5, migration 0014) and, in CI's second pass, on PostgreSQL
(SearchVector): the same assertions hold on both.
"""

import pytest
from django.db import connection
from django.urls import reverse

from chat.models import Answer, Conversation, Message, Run
from chat.search import search


def _turn(owner, title, question, answer_text, role=Answer.Role.SEAT):
    conversation = Conversation.objects.create(owner=owner, title=title)
    message = Message.objects.create(conversation=conversation, content=question)
    run = Run.objects.create(message=message, status=Run.Status.DONE)
    Answer.objects.create(run=run, role=role, model_name="SmolLM2", text=answer_text, status="done")
    return conversation, message


@pytest.fixture
def capitals(alice):
    return _turn(alice, "Geography", "What is the capital of Australia?", "It is **Canberra**.")


def test_a_word_only_in_an_answer_is_found_with_a_snippet_and_a_link_to_its_turn(
    client, alice, capitals
):
    conversation, message = capitals
    client.force_login(alice)
    response = client.get(reverse("chat:search"), {"q": "canberra"})
    assert response.status_code == 200
    page = response.content.decode()
    assert "<mark>Canberra</mark>" in page
    assert f'href="{conversation.get_absolute_url()}#turn-{message.pk}"' in page


def test_questions_are_found_and_only_the_owners_conversations(alice, bob, capitals):
    _turn(bob, "Bob's", "What is the capital of Australia?", "Canberra.")
    hits = search(alice, "Australia")
    assert [hit.conversation.owner for hit in hits] == [alice]
    assert hits[0].source == "question"
    assert search(bob, "Canberra")[0].conversation.owner == bob


def test_text_changed_or_deleted_is_searched_as_it_is_now(alice, capitals):
    conversation, message = capitals
    answer = Answer.objects.get(run__message=message)
    answer.text = "Sydney is not the capital."
    answer.save()
    assert search(alice, "Canberra") == []
    assert search(alice, "Sydney")
    conversation.delete()
    assert search(alice, "Sydney") == []


def test_the_judges_json_and_hidden_conversations_are_not_searched(alice):
    _turn(alice, "Judged", "Question?", '{"verdict": "zanzibar"}', role=Answer.Role.JUDGE)
    hidden, _ = _turn(alice, "Eval", "Eval item", "quokka")
    Conversation.objects.filter(pk=hidden.pk).update(hidden=True)
    assert search(alice, "zanzibar") == []
    assert search(alice, "quokka") == []


def test_the_snippet_is_escaped_and_only_our_marks_are_tags(client, alice):
    _turn(
        alice, "XSS", "Is <script>alert(1)</script> safe?", "No: <mark>fake</mark> <b>bold</b> safe"
    )
    client.force_login(alice)
    page = client.get(reverse("chat:search"), {"q": "safe"}).content.decode()
    assert "<script>alert" not in page and "<b>bold" not in page
    assert "<mark>fake" not in page
    assert "<mark>safe</mark>" in page
    assert "alert(1)" in page
    if connection.vendor == "sqlite":
        # FTS5 keeps the text as written, so its tags come back escaped. PostgreSQL's
        # text search parser reads them as tags and ts_headline leaves them out.
        assert "&lt;script&gt;" in page
        assert "&lt;mark&gt;fake&lt;/mark&gt;" in page


@pytest.mark.parametrize(
    "query",
    [
        "%",
        "%%",
        "_",
        '"',
        "'",
        '"unterminated',
        "Canberra\"'",
        "*",
        "Canb*",
        "NEAR(a b)",
        "a OR",
        "AND",
        "-Canberra",
        "^Canberra",
        "col:Canberra",
        "body:Canberra",
        "(",
        "Canberra)",
        "\x00",
        "Canb\x00erra",
        "\\",
        "' OR 1=1 --",
        "&|!:*",
        " ",
        "x" * 5000,
    ],
)
def test_bad_input_gets_results_or_nothing_found_never_an_error(client, alice, capitals, query):
    client.force_login(alice)
    response = client.get(reverse("chat:search"), {"q": query})
    assert response.status_code == 200
    page = response.content.decode()
    assert ("search-hit" in page) or ("Nothing found" in page) or ("Search conversations" in page)


def test_typed_operators_are_words_not_syntax(alice, capitals):
    assert search(alice, '"Canberra"')  # quotes stripped, the word searched
    assert search(alice, "Canberra)")
    assert search(alice, "body:Canberra") == []  # "body" is a word too, and no text has it
    assert search(alice, "%") == []


def test_the_search_page_needs_a_login(client):
    response = client.get(reverse("chat:search"), {"q": "x"})
    assert response.status_code == 302
