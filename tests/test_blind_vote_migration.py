"""Renaming Vote to BlindVote (chat 0013) keeps every blind vote already cast."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("chat", "0012_answer_client_tool_calls")]
AFTER = [("chat", "0013_blind_vote")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_the_rename_keeps_the_votes_already_cast():
    try:
        apps = _migrate(BEFORE)
        user = apps.get_model("auth", "User").objects.create(username="voter")
        conversation = apps.get_model("chat", "Conversation").objects.create(owner=user)
        message = apps.get_model("chat", "Message").objects.create(
            conversation=conversation, content="Capital of Australia?"
        )
        run = apps.get_model("chat", "Run").objects.create(message=message)
        answer = apps.get_model("chat", "Answer").objects.create(run=run, model_name="Seat One")
        apps.get_model("chat", "Vote").objects.create(run=run, user=user, answer=answer)

        apps = _migrate(AFTER)
        kept = apps.get_model("chat", "BlindVote").objects.get()
        assert (kept.run_id, kept.user_id, kept.answer_id) == (run.pk, user.pk, answer.pk)
    finally:
        _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
