"""Fusion: every seat answers at once, the judge analyses, the synthesizer writes
one answer better than any of them. The default, and Fusion's own design."""

from chat.models import Answer

from ..answer import RunContext
from .common import Outcome, answer_all, fuse


async def run(ctx: RunContext, seats: list[Answer]) -> Outcome:
    await answer_all(ctx, seats)
    return await fuse(ctx, seats)
