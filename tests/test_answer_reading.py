"""Reading an answer, on the server's side: math found and passed as TeX text through
the sanitiser, code blocks past the highlighting cap shown plain within a bounded time,
durations in human units, and the "how this answer was made" line true to the run."""

import time

import pytest
from django.template import Context, Template

from chat.markdown import HIGHLIGHT_MAX_CHARS, render
from chat.models import Answer, Conversation, Message, Run
from chat.templatetags.chat_tags import how_made
from core.durations import human_duration


def inline(tex: str) -> str:
    return f'<span class="math" data-display="inline">{tex}</span>'


def display(tex: str) -> str:
    return f'<div class="math" data-display="block">{tex}</div>'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Area $\\pi r^2$ here", inline("\\pi r^2")),
        ("$$\\int_0^1 x\\,dx$$", display("\\int_0^1 x\\,dx")),
        ("so \\(a+b\\) holds", inline("a+b")),
        ("\\[\nb = \\frac{1}{2}\n\\]", display("\nb = \\frac{1}{2}\n")),
        ("The answer: \\boxed{0.05}", inline("\\boxed{0.05}")),
        # What the bundled models write once their backslashes are lost:
        ("So:\n\n[ b = \\frac{1.00}{2} ]\n", '<span class="math" data-display="block">'),
        ("The ball costs (\\boxed{0.05}).", inline("\\boxed{0.05}")),
        ("[ b + (b + 1.00) = 1.10 ]", '<span class="math" data-display="block">b + (b + 1.00)'),
        ("mid \\[c = d\\] text", '<span class="math" data-display="block">c = d</span>'),
    ],
)
def test_math_becomes_tex_holding_elements(text, expected):
    assert expected in render(text)


@pytest.mark.parametrize(
    "text",
    [
        "It costs $5 and $10 after tax.",  # money, not math
        "see [the docs] and [a link](https://example.com)",
        "[ ] a task\n\n[ see the docs ]\n\n[ a = 1 ] said inline",
        "a path (C:\\Users\\me) and a note [x \\y]",  # a backslash alone is not TeX
        "`$x$` and\n\n```\n$$y$$ \\frac{a}{b}\n```",  # code stays code
    ],
)
def test_text_that_is_not_math_stays_text(text):
    assert 'class="math"' not in render(text)


def test_math_source_reaches_the_page_as_text_only():
    html = render("$<img src=x onerror=alert(1)>$ and $$</div><script>alert(1)</script>$$")
    assert "<img" not in html and "<script" not in html
    assert "&lt;script&gt;" in html


def test_a_huge_code_block_is_shown_plain_within_a_bounded_time():
    code = "def f(x):\n    return x + 1\n" * (HIGHLIGHT_MAX_CHARS // 10)
    started = time.monotonic()
    html = render(f"```python\n{code}```")
    assert time.monotonic() - started < 2
    assert "return x + 1" in html and '<span class="k">' not in html
    small = render("```python\ndef f(x):\n    return x\n```")
    assert '<span class="k">def</span>' in small  # below the cap: highlighted


@pytest.mark.parametrize(
    ("ms", "words"),
    [
        (None, "–"),
        (0, "0 ms"),
        (850, "850 ms"),
        (999.6, "1.0 s"),
        (32911, "32.9 s"),
        (59960, "1 min"),
        (125_000, "2 min 5 s"),
        (3_840_000, "1 h 4 min"),
    ],
)
def test_durations_read_in_human_units(ms, words):
    assert human_duration(ms) == words
    assert Template("{{ ms|duration }}").render(Context({"ms": ms})) == words


@pytest.fixture
def run(alice):
    conversation = Conversation.objects.create(owner=alice, title="Bat and ball")
    return Run.objects.create(
        message=Message.objects.create(conversation=conversation, content="How much is the ball?"),
        status=Run.Status.DONE,
    )


def answers(run, *roles_and_statuses):
    for position, (role, status) in enumerate(roles_and_statuses):
        Answer.objects.create(run=run, role=role, position=position, status=status, text="x")


@pytest.mark.django_db
def test_how_made_fusion(run):
    answers(run, ("seat", "done"), ("seat", "done"), ("judge", "done"), ("synthesizer", "done"))
    assert how_made(run) == "2 models, judge, synthesis"


@pytest.mark.django_db
def test_how_made_a_vote_without_judge_or_synthesis(run):
    run.decisions = [{"stage": "vote", "summary": "Vote 3–0 for 0.05", "ms": 900}]
    answers(run, ("seat", "done"), ("seat", "done"), ("seat", "done"))
    assert how_made(run) == "voted, 3 models"


@pytest.mark.django_db
def test_how_made_gated_routed_escalated_and_stages_to_come(run):
    run.decisions = [
        {"stage": "route", "summary": "…"},
        {"stage": "gate", "summary": "…"},
        {"stage": "escalate", "summary": "…"},
        {"stage": "escalate", "summary": "…"},
        {"stage": "verify", "summary": "…"},  # a strategy another branch adds
        {"stage": "recount", "summary": "…"},  # unknown: shown by its name
    ]
    answers(run, ("seat", "done"), ("seat", "skipped"), ("seat", "done"), ("judge", "done"))
    assert how_made(run) == "routed, gated, escalated, verified, recount, 2 of 3 models, judge"


@pytest.mark.django_db
def test_an_answer_of_tool_calls_only_says_so(client, alice, run):
    Answer.objects.create(
        run=run,
        status="done",
        text="",
        tool_steps=[{"name": "run_python", "preview": "→ 0.05", "latency_ms": 1200}],
    )
    client.force_login(alice)
    page = client.get(run.message.conversation.get_absolute_url()).content.decode()
    assert "No text: this answer is its tool step, below." in page
    assert "1.2 s" in page  # the step's time, in human units
