"""Messages form a tree (an edit or a regeneration is a second version of a turn).
Conversations from before are one line: each message follows the one before it."""

import django.db.models.deletion
from django.db import migrations, models


def chain_existing(apps, schema_editor):
    Message = apps.get_model("chat", "Message")
    previous: dict[int, int] = {}  # conversation -> its last message so far
    changed = []
    for pk, conversation in Message.objects.order_by("pk").values_list("pk", "conversation_id"):
        if conversation in previous:
            changed.append(Message(pk=pk, parent_id=previous[conversation]))
        previous[conversation] = pk
        if len(changed) >= 500:
            Message.objects.bulk_update(changed, ["parent"])
            changed = []
    Message.objects.bulk_update(changed, ["parent"])


class Migration(migrations.Migration):
    dependencies = [
        ("chat", "0015_run_failure_tool_choice_unmet"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversation",
            name="current_leaf",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="chat.message",
            ),
        ),
        migrations.AddField(
            model_name="message",
            name="parent",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="children",
                to="chat.message",
            ),
        ),
        # An empty current_leaf means the newest message, which is what these show.
        migrations.RunPython(chain_existing, migrations.RunPython.noop),
    ]
