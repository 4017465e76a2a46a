"""Answer.html: an answer's text rendered once, when saved. Answers saved before the
field existed are rendered here, so no page or snapshot has to."""

from django.db import migrations, models

from chat import markdown

BATCH = 200


def render_saved_answers(apps, schema_editor):
    Answer = apps.get_model("chat", "Answer")
    pks = list(Answer.objects.exclude(text="").order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(pks), BATCH):
        answers = list(Answer.objects.filter(pk__in=pks[start : start + BATCH]).only("text"))
        for answer in answers:
            answer.html = markdown.render(answer.text)
        Answer.objects.bulk_update(answers, ["html"])


class Migration(migrations.Migration):

    dependencies = [
        ("chat", "0008_conversation_hidden"),
    ]

    operations = [
        migrations.AddField(
            model_name="answer",
            name="html",
            field=models.TextField(blank=True),
        ),
        migrations.RunPython(render_saved_answers, migrations.RunPython.noop, elidable=True),
    ]
