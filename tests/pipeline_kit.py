"""Building panels whose seats, judge and synthesizer are scripted upstreams, and
listening to a run's events as a browser would."""

import asyncio
import json
from contextlib import ExitStack

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from chat.engine import live
from chat.engine.runs import create_run
from chat.models import Conversation
from panels.models import CatalogModel, Panel, Provider, Seat
from tests.scripted_server import Reply, ScriptedServer

GOOD_ANALYSIS = {
    "consensus": ["Canberra is the capital"],
    "contradictions": [
        {
            "point": "which city",
            "positions": {"A": "Canberra", "B": "Sydney"},
            "verdict": "A is right: Canberra is the capital.",
        }
    ],
    "partial_coverage": [{"point": "parliament moved there in 1927", "labels": ["A", "C"]}],
    "unique_insights": [{"label": "A", "insight": "mentions 1913"}],
    "blind_spots": ["nobody mentions the ACT"],
    "errors": [{"label": "B", "error": "Sydney is not the capital"}],
    "scores": [
        {"label": "A", "score": 9, "reason": "right"},
        {"label": "B", "score": 3, "reason": "wrong"},
        {"label": "C", "score": 7, "reason": "right but short"},
    ],
}


def analysis_reply(analysis=GOOD_ANALYSIS) -> Reply:
    return Reply.stream([json.dumps(analysis)])


class ScriptedPanel:
    """One scripted upstream per role, so concurrent seats never race for replies."""

    def __init__(
        self,
        seats=3,
        fallback_synthesizer=False,
        user=None,
        seat_options=(),
        router=False,
        solo=False,
        **panel_options,
    ):
        self._stack = ExitStack()
        self.seats = [self._stack.enter_context(ScriptedServer()) for _ in range(seats)]
        self.judge = self._stack.enter_context(ScriptedServer())
        self.synthesizer = self._stack.enter_context(ScriptedServer())
        self.fallback = (
            self._stack.enter_context(ScriptedServer()) if fallback_synthesizer else None
        )
        self.router = self._stack.enter_context(ScriptedServer()) if router else None
        if self.router is not None:
            panel_options["router"] = self._model(self.router, "router")
        self.user = user or get_user_model().objects.create_user(
            "alice", password="pw-long-enough-1"
        )
        self.panel = Panel.objects.create(
            slug="scripted",
            name="Scripted",
            owner=self.user,
            judge=self._model(self.judge, "judge"),
            synthesizer=self._model(self.synthesizer, "synth"),
            synthesizer_fallback=self._model(self.fallback, "fallback") if self.fallback else None,
            **panel_options,
        )
        for position, server in enumerate(self.seats):
            options = seat_options[position] if position < len(seat_options) else {}
            Seat.objects.create(
                panel=self.panel,
                position=position,
                model=self._model(server, f"seat-{position}"),
                **options,
            )
        self.conversation = Conversation.objects.create(owner=self.user, panel=self.panel)
        # A model outside the panel ("Solo"), for a conversation with one model that may
        # consult the panel.
        self.model = self._stack.enter_context(ScriptedServer()) if solo else None
        self.solo = self._model(self.model, "solo") if self.model else None

    def _model(self, server: ScriptedServer, name: str) -> CatalogModel:
        provider = Provider.objects.create(name=f"Up {name}", base_url=server.base_url)
        return CatalogModel.objects.create(
            provider=provider,
            model_id=name,
            display_name=name.title(),
            context_length=8192,
            input_price="1",
            output_price="2",
            supports_tools=True,
        )

    def ask(self, question="What is the capital of Australia?") -> int:
        return create_run(self.conversation, question).run.pk

    def calls(self) -> dict[str, int]:
        """How many requests each scripted upstream received."""
        counts = {f"seat-{i}": len(server.requests) for i, server in enumerate(self.seats)}
        counts |= {"judge": len(self.judge.requests), "synth": len(self.synthesizer.requests)}
        if self.router is not None:
            counts["router"] = len(self.router.requests)
        return counts

    def close(self):
        self._stack.close()


async def collect_events(
    conversation: str, until: str = "run.done", timeout: float = 30, after: str | None = None
) -> list[dict]:
    """The conversation's events after id `after` (by default, from now on), read from its
    Redis Stream, up to `until`."""
    redis = live.redis_client()
    events = []
    try:
        cursor = after if after is not None else await live.last_event_id(redis, conversation)
        async with asyncio.timeout(timeout):
            while True:
                read = await live.read_events(redis, {conversation: cursor}, 1000)
                for cursor, event in read.get(conversation, []):  # noqa: B007 (the next read's start)
                    events.append(event)
                    if event["type"] == until:
                        return events
    finally:
        await redis.aclose()


async def listen(conversation: str, until: str = "run.done", timeout: float = 30) -> asyncio.Task:
    """A task collecting the conversation's events from now on, returned once "now" is known:
    nothing the caller does after this call can come before the listener's start."""
    redis = live.redis_client()
    try:
        now = await live.last_event_id(redis, conversation)
    finally:
        await redis.aclose()
    return asyncio.create_task(collect_events(conversation, until, timeout, after=now))


async def run_and_listen(kit: ScriptedPanel, run_id: int, timeout: float = 30) -> list[dict]:
    from chat.engine import pipeline

    listener = await listen(kit.conversation.events_key, timeout=timeout)
    # Bounded as the listener is: a run that hangs fails its test now, not at
    # pytest-timeout's five minutes.
    await asyncio.wait_for(pipeline.execute(run_id), timeout)
    return await listener


__all__ = ["sync_to_async"]
