"""Versions of a turn: an edited question and a regenerated answer are new runs
beside the old ones, the arrows choose which is shown (kept across a reload), and
later turns, and the history a model is sent, follow the version shown."""

import pytest
from django.urls import reverse

from chat.engine.context import earlier_turns, turns_of
from chat.models import Conversation, Message, Run
from tests.versions_kit import finish_queued, finished_turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(alice, smollm2):
    return Conversation.objects.create(owner=alice, model=smollm2, title="Numbers")


def post(client, name, conversation, message, **data):
    return client.post(
        reverse(f"chat:{name}", args=[conversation.pk, message.pk]),
        data,
        HTTP_ACCEPT="application/json",
    )


def test_regenerate_keeps_both_answers_as_versions(
    client, alice, conversation, django_capture_on_commit_callbacks
):
    first = finished_turn(conversation, "Two plus two?", None, "four")
    client.force_login(alice)
    with django_capture_on_commit_callbacks() as queued:
        response = post(client, "regenerate", conversation, first)
    assert response.status_code == 201 and len(queued) == 1
    again = Message.objects.get(pk=Run.objects.get(pk=response.json()["run"]).message_id)
    assert again.content == "Two plus two?" and again.parent_id is None
    assert Run.objects.filter(message__conversation=conversation).count() == 2  # both kept
    finish_queued(again, "4")

    page = client.get(conversation.get_absolute_url()).content.decode()
    assert "2 / 2" in page and 'aria-label="Previous version (1 of 2)"' in page
    assert "Seat Alpha says four" not in page  # the new version is shown

    client.post(reverse("chat:show_version", args=[conversation.pk, first.pk]))
    page = client.get(conversation.get_absolute_url()).content.decode()  # a reload
    assert "1 / 2" in page and "Seat Alpha says four" in page


def test_an_edited_question_is_a_second_version_and_later_turns_follow_it(
    client, alice, conversation, django_capture_on_commit_callbacks
):
    first = finished_turn(conversation, "Capital of France?", None, "Paris")
    second = finished_turn(conversation, "And its population?", first, "2.1 million")
    client.force_login(alice)
    with django_capture_on_commit_callbacks():
        response = post(client, "edit", conversation, first, content="Capital of Italy?")
    assert response.status_code == 201
    edited = Message.objects.get(content="Capital of Italy?")
    assert edited.parent_id is None
    conversation.refresh_from_db()
    assert conversation.branch_ids() == [edited.pk]  # the later turn is on the old branch
    finish_queued(edited, "Rome")

    # A turn sent now follows the edited version, and its seats are sent that branch.
    with django_capture_on_commit_callbacks():
        client.post(reverse("chat:send", args=[conversation.pk]), {"content": "Its river?"})
    third = Message.objects.get(content="Its river?")
    assert third.parent_id == edited.pk
    assert earlier_turns(third) == [("Capital of Italy?", "Rome")]

    # Back to the first version: its later turn comes back with it.
    client.post(reverse("chat:show_version", args=[conversation.pk, first.pk]))
    conversation.refresh_from_db()
    assert conversation.branch_ids() == [first.pk, second.pk]
    assert turns_of(second.pk) == [
        ("And its population?", "2.1 million"),
        ("Capital of France?", "Paris"),
    ]
    page = client.get(conversation.get_absolute_url()).content.decode()
    assert "And its population?" in page and "Its river?" not in page


def test_an_empty_edit_is_refused_and_a_busy_conversation_waits(
    client, alice, conversation, django_capture_on_commit_callbacks
):
    first = finished_turn(conversation, "Hi?", None, "Hello")
    client.force_login(alice)
    assert post(client, "edit", conversation, first, content="  ").status_code == 400
    with django_capture_on_commit_callbacks():
        assert post(client, "regenerate", conversation, first).status_code == 201
    assert post(client, "regenerate", conversation, first).status_code == 409  # one at a time
    assert Message.objects.count() == 2


def test_someone_elses_turn_cannot_be_edited_regenerated_or_shown(client, bob, conversation):
    first = finished_turn(conversation, "Mine?", None, "Yes")
    client.force_login(bob)
    for name in ("edit", "regenerate", "show_version"):
        assert post(client, name, conversation, first, content="x").status_code == 404
    assert Message.objects.count() == 1


def test_a_conversation_from_before_versions_is_one_branch(conversation):
    # Migration 0016 chains old messages; one without a current leaf shows the newest.
    first = Message.objects.create(conversation=conversation, content="one")
    second = Message.objects.create(conversation=conversation, content="two", parent=first)
    assert conversation.branch_ids() == [first.pk, second.pk]
