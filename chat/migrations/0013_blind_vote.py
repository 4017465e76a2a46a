# The run's blind vote is a BlindVote, so that "vote" names only the strategy.
# RenameModel keeps the rows (the table is renamed, chat_vote → chat_blindvote).

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0012_answer_client_tool_calls'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RenameModel(old_name='Vote', new_name='BlindVote'),
        migrations.AlterField(
            model_name='blindvote',
            name='run',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='blind_votes', to='chat.run'),
        ),
        migrations.AlterField(
            model_name='blindvote',
            name='answer',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='blind_votes', to='chat.answer'),
        ),
        migrations.RemoveConstraint(model_name='blindvote', name='one_vote_per_run'),
        migrations.AddConstraint(
            model_name='blindvote',
            constraint=models.UniqueConstraint(fields=('run', 'user'), name='one_blind_vote_per_run'),
        ),
    ]
