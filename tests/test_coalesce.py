import asyncio

from chat.engine.live import Coalescer


async def test_first_text_is_flushed_at_once_then_batched():
    flushed: list[str] = []

    async def flush(text):
        flushed.append(text)

    coalescer = Coalescer(flush, interval=10)  # a long interval: nothing else gets out early
    coalescer.start()
    coalescer.push("first")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert flushed == ["first"]  # not held back by the interval

    for token in ["a", "b", "c"]:
        coalescer.push(token)
    await asyncio.sleep(0)
    assert flushed == ["first"]  # held until the interval ends…

    await coalescer.close()
    assert flushed == ["first", "abc"]  # …or the stream closes, in one piece


async def test_close_without_text_flushes_nothing():
    flushed = []

    async def flush(text):
        flushed.append(text)

    coalescer = Coalescer(flush, interval=0.05)
    coalescer.start()
    await coalescer.close()
    assert flushed == []
