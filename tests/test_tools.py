"""Seats that look things up and run code, on scripted upstreams and real loopback
servers (a SearXNG-shaped search backend, web pages): the tool loop, its events and
the saved steps; the cap on tool calls; web_fetch's SSRF guard and excluded domains.

Long on purpose: the loopback search backend and web pages are shared by every tool's
tests."""

import asyncio
import json
import random

import pytest

from chat.engine import prompts
from chat.engine.tool_loop import OUT_OF_CALLS
from chat.engine.tools import fetch, search
from chat.engine.tools.base import ToolEnv
from chat.engine.tools.sandbox import unavailable_reason
from chat.models import Run
from panels.models import Seat
from tests.pipeline_kit import ScriptedPanel, analysis_reply, run_and_listen
from tests.rss import PeakRSS
from tests.scripted_server import Reply, ScriptedServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("redis_ready")]

PAGE = """<html><head><title>Canberra - facts</title></head><body><nav>menu</nav>
<article><h1>Canberra</h1><p>Canberra is the capital city of Australia. It was chosen as
the site of the capital in 1908 as a compromise between Sydney and Melbourne.</p>
<p>Parliament House opened in Canberra in 1927 and the city has grown ever since.</p>
</article><footer>footer</footer></body></html>"""


@pytest.fixture(autouse=True)
def fast_failures(settings):
    settings.CALL_MAX_RETRIES = 0


@pytest.fixture
def web(settings):
    """A search backend and a web server on loopback, both allowed for this test."""
    with ScriptedServer() as searx, ScriptedServer() as pages:
        settings.SEARCH_BACKEND = "searxng"
        settings.SEARXNG_URL = searx.base_url.removesuffix("/v1")
        settings.TOOLS_PRIVATE_HOSTS = [f"127.0.0.1:{pages.port}"]
        yield searx, pages


def _tools_kit(tools=("web_search", "web_fetch"), seats=1, **seat_options):
    kit = ScriptedPanel(seats=seats, tools=list(tools))
    Seat.objects.filter(panel=kit.panel).update(**seat_options)
    return kit


def _call(call_id, name, **arguments):
    return (call_id, name, json.dumps(arguments))


def test_a_seat_searches_then_fetches_then_answers(web):
    searx, pages = web
    page_url = f"http://127.0.0.1:{pages.port}/canberra"
    searx.enqueue(
        Reply.json(
            200,
            {"results": [{"title": "Canberra", "url": page_url, "content": "Capital city…"}]},
        )
    )
    pages.enqueue(Reply.page(PAGE))
    kit = _tools_kit()
    try:
        seat = kit.seats[0]
        seat.enqueue(
            Reply.tool_calls([_call("c1", "web_search", query="capital of Australia")]),
            Reply.tool_calls([_call("c2", "web_fetch", url=page_url)]),
            Reply.stream(["Canberra, ", "chosen in 1908."]),
        )
        kit.judge.enqueue(analysis_reply({"scores": [{"label": "A", "score": 9, "reason": "ok"}]}))
        kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
        run_id = kit.ask()
        events = asyncio.run(run_and_listen(kit, run_id))
        run = Run.objects.get(pk=run_id)
        answer = run.seat_answers[0]
        assert run.status == Run.Status.DONE and answer.text == "Canberra, chosen in 1908."
        steps = answer.tool_steps
        assert [s["name"] for s in steps] == ["web_search", "web_fetch"]
        assert steps[0]["preview"] == "“capital of Australia” → 1 result"
        assert steps[1]["preview"].startswith("fetched 127.0.0.1/canberra")
        assert [s["url"] for s in steps[1]["sources"]] == [page_url]
        assert steps[1]["sources"][0]["title"].startswith("Canberra")
        assert not any(s["error"] for s in steps)
        # The model was called three times, and saw each tool's result.
        assert len(seat.requests) == 3
        second = seat.requests[1]["json"]["messages"]
        assert second[-2]["tool_calls"][0]["function"]["name"] == "web_search"
        assert second[-1]["role"] == "tool" and page_url in second[-1]["content"]
        third = seat.requests[2]["json"]["messages"][-1]
        assert "capital city of Australia" in third["content"] and "footer" not in third["content"]
        kinds = [e["type"] for e in events if e.get("answer") == answer.pk]
        assert kinds.count("tool.started") == 2 and kinds.count("tool.done") == 2
        assert searx.requests[0]["path"].startswith("/search?q=capital+of+Australia&format=json")
    finally:
        kit.close()


def test_max_tool_calls_stops_a_model_that_never_stops_calling(web):
    searx, _ = web
    searx.default = Reply.json(200, {"results": []})
    kit = _tools_kit(max_tool_calls=2)
    try:
        seat = kit.seats[0]
        seat.default = Reply.tool_calls([_call("cx", "web_search", query="more")])
        seat.enqueue(
            Reply.tool_calls([_call("c1", "web_search", query="one")]),
            Reply.tool_calls([_call("c2", "web_search", query="two")]),
            Reply.stream(["I could not find it; my best answer is Canberra."]),
        )
        kit.judge.enqueue(analysis_reply({"scores": [{"label": "A", "score": 5, "reason": "ok"}]}))
        kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
        run_id = kit.ask()
        asyncio.run(run_and_listen(kit, run_id))
        answer = Run.objects.get(pk=run_id).seat_answers[0]
        assert len(answer.tool_steps) == 2 and len(seat.requests) == 3
        last = seat.requests[2]["json"]
        assert "tools" not in last  # no more tools offered
        assert last["messages"][-1] == {"role": "user", "content": OUT_OF_CALLS}
        assert answer.text.endswith("my best answer is Canberra.")
    finally:
        kit.close()


def test_a_model_that_cannot_call_tools_is_never_sent_any(web):
    kit = _tools_kit()
    try:
        Seat.objects.get(panel=kit.panel).model.__class__.objects.filter(model_id="seat-0").update(
            supports_tools=False
        )
        kit.seats[0].enqueue(Reply.stream(["Canberra."]))
        kit.judge.enqueue(analysis_reply({"scores": [{"label": "A", "score": 9, "reason": "ok"}]}))
        kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
        asyncio.run(run_and_listen(kit, kit.ask()))
        assert "tools" not in kit.seats[0].requests[0]["json"]
    finally:
        kit.close()


def test_bad_tool_calls_become_results_the_model_can_read(web):
    kit = _tools_kit()
    try:
        seat = kit.seats[0]
        seat.enqueue(
            Reply.tool_calls(
                [("b1", "web_search", "{not json"), _call("b2", "teleport", to="Mars")]
            ),
            Reply.stream(["Canberra."]),
        )
        kit.judge.enqueue(analysis_reply({"scores": [{"label": "A", "score": 9, "reason": "ok"}]}))
        kit.synthesizer.enqueue(Reply.stream(["Canberra."]))
        run_id = kit.ask()
        asyncio.run(run_and_listen(kit, run_id))
        steps = Run.objects.get(pk=run_id).seat_answers[0].tool_steps
        assert "not valid JSON" in steps[0]["error"]
        assert "There is no tool 'teleport'" in steps[1]["error"]
        replies = [m for m in seat.requests[1]["json"]["messages"] if m["role"] == "tool"]
        assert len(replies) == 2  # both calls answered, in words
    finally:
        kit.close()


# --- web_fetch's guard, and search's failures, on real sockets --------------------------


def _env(excluded=()) -> tuple[ToolEnv, object]:
    import httpx

    from chat.engine.live import redis_client

    http = httpx.AsyncClient(follow_redirects=False, trust_env=False)
    return ToolEnv(http=http, redis=redis_client(), excluded_domains=tuple(excluded)), http


async def _fetch(url: str, excluded=()):
    env, http = _env(excluded)
    try:
        return await fetch.fetch_page(url, env)
    finally:
        await http.aclose()
        await env.redis.aclose()


@pytest.mark.parametrize(
    "url, words",
    [
        ("http://127.0.0.1:6379/", "not a public address"),
        ("http://localhost:6379/", "not a public address"),
        ("http://[::ffff:127.0.0.1]:6379/", "not a public address"),
        ("http://10.0.0.8/", "not a public address"),
        ("http://169.254.169.254/latest/meta-data/", "not a public address"),
        ("file:///etc/passwd", "must start with http:// or https://"),
    ],
)
def test_web_fetch_refuses_private_and_local_addresses(url, words, settings):
    settings.TOOLS_PRIVATE_HOSTS = []
    result = asyncio.run(_fetch(url))
    assert result.error and words in result.text, result.text


def test_a_redirect_to_loopback_is_refused_hop_by_hop(web):
    _, pages = web
    pages.enqueue(Reply.page("", status=302, headers={"Location": "http://127.0.0.1:6379/"}))
    result = asyncio.run(_fetch(f"http://127.0.0.1:{pages.port}/go"))
    assert "not a public address" in result.error


def test_excluded_domains_are_never_fetched_nor_listed(web, settings):
    searx, _ = web
    results = [
        {"title": "Rubric", "url": "https://bench.example.org/answers", "content": "the key"},
        {"title": "Other", "url": "https://news.example.com/x", "content": "news"},
    ]
    searx.enqueue(Reply.json(200, {"results": results}))
    env, http = _env(excluded=("example.org",))

    async def both():
        try:
            found = await search.search("grading rubric", env)
            fetched = await fetch.fetch_page("https://docs.bench.example.org/key", env)
            return found, fetched
        finally:
            await http.aclose()
            await env.redis.aclose()

    found, fetched = asyncio.run(both())
    assert [s["url"] for s in found.sources] == ["https://news.example.com/x"]
    assert "excluded domains" in fetched.error


def test_oversized_pages_are_cut_and_other_types_refused(web, settings):
    _, pages = web
    settings.WEB_FETCH_MAX_BYTES = 10_000
    big = (
        "<html><body><article>"
        + "<p>Canberra is the capital.</p>" * 2000
        + "</article></body></html>"
    )
    pages.enqueue(Reply.page(big), Reply.page("%PDF-1.7", content_type="application/pdf"))
    cut = asyncio.run(_fetch(f"http://127.0.0.1:{pages.port}/big"))
    assert not cut.error and "only its start was read" in cut.text
    pdf = asyncio.run(_fetch(f"http://127.0.0.1:{pages.port}/file.pdf"))
    assert "application/pdf" in pdf.error and "only text pages" in pdf.error


def test_a_search_backend_that_refuses_or_hangs_is_reported_in_words(web, settings):
    searx, _ = web
    settings.SEARCH_TIMEOUT_S = 1
    searx.enqueue(
        Reply.json(429, {"error": "slow down"}, headers={"Retry-After": "30"}),
        Reply.stream(["x"], first_delay=3),  # headers at once, the body too late
    )
    env, http = _env()

    async def twice():
        try:
            return (
                await search.search("a query nobody cached 1", env),
                await search.search("a query nobody cached 2", env),
            )
        finally:
            await http.aclose()
            await env.redis.aclose()

    limited, slow = asyncio.run(twice())
    assert "rate limited (429)" in limited.text and "answer without it" in limited.text
    assert "no answer within 1 s" in slow.text


@pytest.mark.skipif(bool(unavailable_reason()), reason="bubblewrap is not installed")
def test_run_python_as_a_tool():
    from chat.engine.tools import registry

    env, http = _env()

    async def go():
        try:
            return await registry.call("run_python", json.dumps({"code": "print(6 * 7)"}), env)
        finally:
            await http.aclose()
            await env.redis.aclose()

    result, _ = asyncio.run(go())
    assert "stdout:\n42" in result.text and result.preview == "ran 1 line → 42"


def test_the_conversation_shows_tool_steps_and_only_web_sources(client, web):
    from chat.models import Answer

    kit = _tools_kit()
    try:
        run_id = kit.ask()
        answer = Answer.objects.get(run_id=run_id, role="seat")
        answer.status, answer.text = "done", "Canberra."
        answer.tool_steps = [
            {
                "id": "c1",
                "name": "web_search",
                "arguments": "{}",
                "preview": "“capital” → 2 results",
                "error": "",
                "latency_ms": 12,
                "cost": "0",
                "sources": [
                    {"title": "<b>Canberra</b>", "url": "https://example.com/canberra"},
                    {"title": "evil", "url": "javascript:alert(1)"},
                ],
            }
        ]
        answer.save()
        client.force_login(kit.user)
        page = client.get(kit.conversation.get_absolute_url()).content.decode()
        assert "🔎" in page and "“capital” → 2 results" in page
        assert 'href="https://example.com/canberra"' in page
        assert "&lt;b&gt;Canberra&lt;/b&gt;" in page  # titles are text, never HTML
        assert "javascript:alert" not in page
    finally:
        kit.close()


def test_the_builder_saves_who_gets_tools(client, alice, smollm2):
    from django.urls import reverse

    from panels.models import CatalogModel, Panel
    from tests.test_panels import builder_post

    qwen = CatalogModel.objects.get(model_id="qwen2.5-coder-0.5b")
    client.force_login(alice)
    builder = client.get(reverse("panels:new")).content.decode()
    assert builder.count('name="tools"') == 3  # three boxes, shown once (not twice)
    assert builder.count('name="judge_tools"') == 1
    data = builder_post(
        (smollm2, qwen),
        tools=["web_search", "run_python"],
        excluded_domains="Bench.Example.org, rubrics.example.net",
        **{"seats-0-use_tools": "on", "seats-0-max_tool_calls": "3"},
    )
    response = client.post(reverse("panels:new"), data)
    assert response.status_code == 302, response.content.decode()[:1500]
    panel = Panel.objects.get(owner=alice)
    snapshot = panel.snapshot()
    assert snapshot["tools"] == ["web_search", "run_python"]
    assert snapshot["excluded_domains"] == ["bench.example.org", "rubrics.example.net"]
    seats = snapshot["seats"]
    assert (seats[0]["use_tools"], seats[0]["max_tool_calls"]) == (True, 3)
    assert seats[1]["use_tools"] is False  # unchecked
    bad = builder_post((smollm2, qwen), **{"seats-0-max_tool_calls": "40"})
    assert (
        "Tool calls per answer must be a whole number from 1 to 16."
        in client.post(reverse("panels:new"), bad).content.decode()
    )


@pytest.mark.skipif(bool(unavailable_reason()), reason="bubblewrap is not installed")
def test_the_judge_settles_a_contradiction_by_running_the_code():
    """Two seats disagree about what a program prints; the judge runs it in the sandbox
    and the analysis names the right one, citing what it ran and what came out."""
    kit = ScriptedPanel(seats=2, judge_tools=True)
    try:
        kit.seats[0].enqueue(Reply.stream(["It prints 6."]))
        kit.seats[1].enqueue(Reply.stream(["It prints 5."]))
        code = "print(len('banana'))"
        kit.synthesizer.enqueue(Reply.stream(["It prints 6."]))
        run_id = kit.ask("What does print(len('banana')) print?")
        # The judge sees the answers under shuffled labels; script it to name the
        # one that says 6, whatever its label.
        seats = Run.objects.get(pk=run_id).seat_answers
        labelled = prompts.anonymise([(a.pk, "") for a in seats], random.Random(run_id))
        label = {answer_id: lab for lab, answer_id, _ in labelled}
        right, wrong = label[seats[0].pk], label[seats[1].pk]
        kit.judge.enqueue(
            Reply.tool_calls([_call("j1", "run_python", code=code)]),
            Reply.stream(["I ran print(len('banana')): it prints 6."]),
            analysis_reply(
                {
                    "contradictions": [
                        {
                            "point": "what the program prints",
                            "positions": {right: "6", wrong: "5"},
                            "verdict": f"Running it printed 6: answer {right} is right.",
                        }
                    ],
                    "scores": [
                        {"label": right, "score": 9, "reason": "right"},
                        {"label": wrong, "score": 2, "reason": "wrong"},
                    ],
                }
            ),
        )
        asyncio.run(run_and_listen(kit, run_id))
        run = Run.objects.get(pk=run_id)
        check_call = run.judge_answers[0]
        assert check_call.tool_steps[0]["name"] == "run_python"
        assert check_call.tool_steps[0]["output"].endswith("stdout:\n6\n")  # really ran
        (check,) = run.analysis["checks"]
        assert check["code"] == code and "6" in check["output"]
        # The judge's analysis call saw what came out, and judged by it.
        analysis_prompt = kit.judge.requests[2]["json"]["messages"][-1]["content"]
        assert "<checks-" in analysis_prompt and "stdout:\n6" in analysis_prompt
        verdict = run.analysis["contradictions"][0]["verdict"]
        assert f"answer {right} is right" in verdict
        assert run.analysis["labels"][right] == seats[0].pk  # the seat that said 6
    finally:
        kit.close()


def test_web_fetch_refuses_a_compressed_page_rather_than_inflate_it(web):
    import gzip

    _searx, pages = web
    bomb = gzip.compress(b"<p>aaaa</p>" * 20_000_000, compresslevel=9)  # 220 MB inflated
    headers = {"Content-Type": "text/html", "Content-Encoding": "gzip"}
    pages.enqueue(Reply(headers=headers, chunks=[bomb]))
    with PeakRSS() as memory:
        result = asyncio.run(_fetch(f"http://127.0.0.1:{pages.port}/bomb"))
    assert result.error and "gzip-compressed" in result.text, result.text
    assert pages.requests[0]["headers"]["Accept-Encoding"] == "identity"
    assert memory.growth < 24 * 1024 * 1024
