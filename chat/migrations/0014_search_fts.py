"""Full-text search on SQLite: an FTS5 table of questions and answers (chat/search.py).

Kept in step by triggers, so every write (the worker's, the admin's, a cascade) counts.
A question's row is its message id negated, an answer's its id: one rowid space, and
a row found again at once. On PostgreSQL nothing is made: chat/search.py searches with
`SearchVector` there.
"""

from django.db import migrations

SEARCHED = "new.role IN ('seat', 'synthesizer')"

CREATE = [
    "CREATE VIRTUAL TABLE chat_search USING fts5(body, message_id UNINDEXED, "
    "tokenize = 'unicode61 remove_diacritics 2')",
    # questions
    """CREATE TRIGGER chat_search_message_insert AFTER INSERT ON chat_message BEGIN
        INSERT INTO chat_search(rowid, body, message_id) VALUES (-new.id, new.content, new.id);
    END""",
    """CREATE TRIGGER chat_search_message_update AFTER UPDATE OF content ON chat_message BEGIN
        DELETE FROM chat_search WHERE rowid = -old.id;
        INSERT INTO chat_search(rowid, body, message_id) VALUES (-new.id, new.content, new.id);
    END""",
    """CREATE TRIGGER chat_search_message_delete AFTER DELETE ON chat_message BEGIN
        DELETE FROM chat_search WHERE rowid = -old.id;
    END""",
    # answers: the seats' and the final one
    f"""CREATE TRIGGER chat_search_answer_insert AFTER INSERT ON chat_answer
        WHEN {SEARCHED} BEGIN
        INSERT INTO chat_search(rowid, body, message_id)
        SELECT new.id, new.text, message_id FROM chat_run WHERE id = new.run_id;
    END""",
    f"""CREATE TRIGGER chat_search_answer_update AFTER UPDATE OF text, role ON chat_answer
        BEGIN
        DELETE FROM chat_search WHERE rowid = old.id;
        INSERT INTO chat_search(rowid, body, message_id)
        SELECT new.id, new.text, message_id FROM chat_run WHERE id = new.run_id AND {SEARCHED};
    END""",
    """CREATE TRIGGER chat_search_answer_delete AFTER DELETE ON chat_answer BEGIN
        DELETE FROM chat_search WHERE rowid = old.id;
    END""",
    # what was written before the table existed
    "INSERT INTO chat_search(rowid, body, message_id) SELECT -id, content, id FROM chat_message",
    f"""INSERT INTO chat_search(rowid, body, message_id)
        SELECT new.id, new.text, r.message_id FROM chat_answer AS new
        JOIN chat_run r ON r.id = new.run_id WHERE {SEARCHED}""",
]

DROP = [
    f"DROP TRIGGER IF EXISTS chat_search_{table}_{event}"
    for table in ("message", "answer")
    for event in ("insert", "update", "delete")
] + ["DROP TABLE IF EXISTS chat_search"]


def _on_sqlite(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "sqlite":
            return
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("chat", "0013_blind_vote")]

    operations = [migrations.RunPython(_on_sqlite(CREATE), _on_sqlite(DROP), elidable=False)]
