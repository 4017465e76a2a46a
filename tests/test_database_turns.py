"""The runs of one worker take turns at SQLite (chat/engine/db.py): SQLite has one
writer at a time and makes a blocked writer sleep and poll, so the runs queue on a
lock of their own that wakes the next one as soon as the last is done."""

import asyncio
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from chat.engine.db import database_thread, in_db

pytestmark = pytest.mark.django_db(transaction=True)


def _write_for_a_while(name: str, spans: list) -> None:
    started = time.monotonic()
    get_user_model().objects.create_user(f"{name}-{len(spans)}", password="pw-long-enough-1")
    time.sleep(0.05)  # a slow write: another run's would overlap it without turns
    spans.append((started, time.monotonic()))


async def _run(name: str, spans: list) -> None:
    async with database_thread():
        for _ in range(3):
            await in_db(_write_for_a_while, name, spans)


async def test_runs_of_one_worker_never_write_to_sqlite_at_once():
    if connection.vendor != "sqlite":
        pytest.skip("the turns are SQLite's; PostgreSQL takes writers side by side")
    spans: list[tuple[float, float]] = []
    await asyncio.gather(*(_run(f"run{i}", spans) for i in range(4)))
    assert len(spans) == 12
    ordered = sorted(spans)
    for (_, ended), (started, _) in zip(ordered, ordered[1:], strict=False):
        assert started >= ended, "two runs were in the database at once"
    assert await asyncio.to_thread(get_user_model().objects.count) == 12
