"""Verify: answers checked by running them, never rewritten (issue 24; SLM-MUX, CodeT, PAL).

Candidates are every seat's answer plus `samples` extra draws per seat (at
`temperature`, at least 0.6). Then, by the kind of question (verification.kind_of):
- **code**: every candidate's code runs in the sandbox against the tests the
  question states; score = tests passed, then the size of the cluster of candidates
  giving the same outputs for the same inputs (CodeT's dual agreement). The best
  candidate is the final answer, verbatim.
- **computation**: each seat also writes a program that prints the answer; it runs
  in the sandbox, and its value joins the vote weighing `computed_weight` times a
  stated answer.
- **everything else**: each seat's most common answer among its own samples, and
  the answer of the most self-consistent seat wins (SLM-MUX); ties go to the higher
  seat weight, then panel order. Nothing to compare (open questions): fusion ends it.
Every decision says which candidates passed which checks, or which agreement decided.
"""

from collections import Counter
from dataclasses import dataclass

from chat.models import Answer, Run

from .. import codetests, events, rows, shortanswer, stages
from ..answer import RunContext
from ..db import in_db
from ..prompts import has_lettered_choices
from ..seats import SeatJob, answered, run_seats, seat_config
from ..verification import (
    CODE,
    COMPUTATION,
    CodeCheck,
    SandboxBudget,
    answer_key,
    check_code,
    choice_key,
    compute,
    kind_of,
    program_prompt,
)
from .common import CANCELLED, Outcome, all_failed, fuse


@dataclass
class Candidate:
    answer: Answer
    seat: int  # the seat's place in the panel
    sample: bool  # an extra draw, not the seat's own answer
    program: bool = False  # written to compute the answer


async def _candidates(ctx: RunContext, seats: list[Answer], kind: str) -> list[Candidate]:
    """Every seat's answer, its samples and (for a computation) its program, asked
    at once."""
    settings = ctx.run.config["strategy"]
    question = ctx.run.message.content
    jobs, found = [], []
    for seat in seats:
        config = seat_config(ctx, seat)
        hotter = max(config.get("temperature") or 0, settings["temperature"])
        hot = {**config, "temperature": hotter}
        jobs.append(SeatJob(seat, config))
        found.append(Candidate(seat, seat.position, sample=False))
        extras = [(hot, False)] * settings["samples"]
        if kind == COMPUTATION:
            extras.append((config, True))
        for seat_settings, program in extras:
            row = await in_db(rows.seat_again, ctx.run, seat)
            await ctx.announce(events.answer_created(row))
            question_asked = program_prompt(question) if program else None
            jobs.append(SeatJob(row, seat_settings, question=question_asked))
            found.append(Candidate(row, seat.position, sample=not program, program=program))
    await stages.enter(ctx, Run.Status.PANEL)
    mark = stages.now()
    await run_seats(ctx, jobs)
    stages.timed(ctx, "panel", mark)
    done = {a.pk for a in answered([c.answer for c in found])}
    return [c for c in found if c.answer.pk in done]


def _weight(ctx: RunContext, seat: int) -> float:
    return float(ctx.run.config["seats"][seat].get("weight", 1.0) or 0.0)


def _name(candidate: Candidate) -> str:
    what = "program" if candidate.program else "sample" if candidate.sample else "answer"
    return f"{candidate.answer.model_name} ({what} #{candidate.answer.pk})"


# --- code ----------------------------------------------------------------------------


def _usable_tests(checks: list[CodeCheck], count: int) -> list[int]:
    """Tests that at least one candidate could run: one that raised in every
    candidate that ran (a "test" that is itself broken) scores nobody."""
    ran = [c for c in checks if c.outputs]
    return [i for i in range(count) if not ran or not all(i in c.errored for c in ran)]


async def _run_checks(
    candidates: list[Candidate], question: str, found: codetests.Found, budget: SandboxBudget
) -> dict[int, CodeCheck]:
    """Each candidate's code against the tests (the same code runs once)."""
    names = codetests.entry_points(question)
    imports = codetests.question_imports(question)
    checks: dict[int, CodeCheck] = {}
    by_code: dict[str, CodeCheck] = {}
    for candidate in candidates:
        code = codetests.code_in(candidate.answer.text, names)
        if code is not None and imports:
            code = f"{imports}\n{code}"
        if code is None or code not in by_code:
            check = await check_code(code, found.tests, budget)
            if code is not None:
                by_code[code] = check
        checks[candidate.answer.pk] = check if code is None else by_code[code]
    return checks


def _code_summary(best: str, found: codetests.Found, passed: int, total: int, cluster: int):
    if not found.tests:
        return f"No tests found in the question: {best} chosen as written (its code loaded)"
    agree = f"its outputs agree with {cluster} candidate(s)"
    if passed == 0:
        return (
            f"No candidate passed any of the {total} tests in the question; {best} chosen ({agree})"
        )
    tests = f"all {total}" if passed == total else f"{passed} of the {total}"
    return f"{best} passed {tests} tests in the question ({agree}): chosen as written"


async def _by_code(ctx: RunContext, candidates: list[Candidate], budget: SandboxBudget):
    question = ctx.run.message.content
    found = codetests.find_tests(question)
    checks = await _run_checks(candidates, question, found, budget)
    usable = _usable_tests(list(checks.values()), len(found.tests))
    clusters = Counter(c.outputs for c in checks.values() if c.ran and c.outputs)

    def passed(candidate: Candidate) -> list[str]:
        return [found.tests[i].source for i in checks[candidate.answer.pk].passed if i in usable]

    def score(candidate: Candidate) -> tuple:
        check = checks[candidate.answer.pk]
        cluster = clusters.get(check.outputs, 0) if check.ran and check.outputs else 0
        weight = _weight(ctx, candidate.seat)
        return (len(passed(candidate)), cluster, check.ran, weight, not candidate.sample)

    best = max(candidates, key=score)  # max keeps the first of equals: panel order
    count, cluster = score(best)[:2]
    summary = _code_summary(_name(best), found, count, len(usable), cluster)
    unusable = [t.source for i, t in enumerate(found.tests) if i not in usable]
    detail = {
        "kind": CODE,
        "tests": [t.source for t in found.tests],
        "broken_tests": found.broken + unusable,
        "candidates": [
            {"candidate": _name(c), "passed": passed(c), "problem": checks[c.answer.pk].problem}
            for c in candidates
        ],
        "winner": _name(best),
    }
    return best.answer, summary, detail


# --- computation and agreement -------------------------------------------------------


@dataclass
class Ballot:
    candidate: Candidate
    key: str  # the normalised answer
    shown: str  # as stated or computed
    weight: float


async def _ballots(
    ctx: RunContext, candidates: list[Candidate], budget: SandboxBudget
) -> tuple[list[Ballot], list[dict]]:
    """Each candidate's answer with its weight: a stated one its seat's weight, a
    computed one `computed_weight` times that. Also what each program did."""
    factor = ctx.run.config["strategy"]["computed_weight"]
    ballots, programs = [], []
    for candidate in candidates:
        weight = _weight(ctx, candidate.seat)
        if candidate.program:
            computed = await compute(candidate.answer.text, budget)
            program = {"candidate": _name(candidate), "value": computed.value}
            programs.append(program | {"problem": computed.problem})
            if key := answer_key(computed.value):
                ballots.append(Ballot(candidate, key, computed.value, weight * factor))
            continue
        stated = shortanswer.extract(candidate.answer.text)
        if key := answer_key(stated):
            ballots.append(Ballot(candidate, key, stated or key, weight))
    return ballots, programs


def _computed_text(ballot: Ballot) -> str:
    code = codetests.code_in(ballot.candidate.answer.text, []) or ""
    return (
        f"{ballot.shown}\n\nComputed by {ballot.candidate.answer.model_name}'s program:\n\n"
        f"```python\n{code.strip()}\n```"
    )


async def _by_computation(ctx: RunContext, candidates: list[Candidate], budget: SandboxBudget):
    ballots, programs = await _ballots(ctx, candidates, budget)
    if not ballots:
        return None, "", {"kind": COMPUTATION, "programs": programs}
    weights: dict[str, float] = {}
    for ballot in ballots:
        weights[ballot.key] = weights.get(ballot.key, 0.0) + ballot.weight
    ranked = sorted(weights.items(), key=lambda kw: -kw[1])
    order = {b.key: i for i, b in reversed(list(enumerate(ballots)))}  # first seen first
    winner = max(weights, key=lambda k: (weights[k], -order[k]))
    members = [b for b in ballots if b.key == winner]
    stated = [b for b in members if not b.candidate.program]
    computed = [b for b in members if b.candidate.program]
    tally = "–".join(f"{w:g}" for _, w in ranked)
    how = f"computed by {len(computed)} program(s)" if computed else "stated only"
    summary = f"Vote {tally} for {members[0].shown} ({how}; a computed answer weighs more)"
    detail = {
        "kind": COMPUTATION,
        "programs": programs,
        "groups": [{"answer": k, "weight": round(w, 6)} for k, w in ranked],
        "winner": members[0].shown,
    }
    if stated:
        best = max(stated, key=lambda b: (_weight(ctx, b.candidate.seat), not b.candidate.sample))
        return best.candidate.answer, summary, detail
    return computed[0], summary, detail


def _by_agreement(ctx: RunContext, candidates: list[Candidate]):
    """SLM-MUX: each seat's most common answer and how self-consistent it is; the
    most self-consistent seat's answer wins."""
    by_seat: dict[int, list[tuple[Candidate, str]]] = {}
    lettered = has_lettered_choices(ctx.run.message.content)
    for candidate in candidates:
        text = candidate.answer.text
        key = choice_key(text) if lettered else answer_key(shortanswer.extract(text))
        if key:
            by_seat.setdefault(candidate.seat, []).append((candidate, key))
    if not by_seat:
        return None, "", {"kind": "agreement"}
    seats = []
    for seat, voted in by_seat.items():
        counts = Counter(key for _, key in voted)
        top = max(counts.values())
        # The seat's own answer settles a tie among its samples.
        key = next(k for c, k in sorted(voted, key=lambda v: v[0].sample) if counts[k] == top)
        seats.append((seat, key, top / len(voted), len(voted)))
    seat, key, consistency, drawn = max(seats, key=lambda s: (s[2], _weight(ctx, s[0]), -s[0]))
    chosen = next(c for c, k in sorted(by_seat[seat], key=lambda v: v[0].sample) if k == key)
    name = chosen.answer.model_name
    summary = (
        f"{name} was the most self-consistent seat ({round(consistency * drawn)} of {drawn} "
        f"draws agree): its answer {key} is final"
    )
    detail = {
        "kind": "agreement",
        "seats": [
            {"seat": s + 1, "answer": k, "consistency": round(c, 3), "draws": n}
            for s, k, c, n in seats
        ],
        "winner": key,
    }
    return chosen.answer, summary, detail


async def run(ctx: RunContext, seats: list[Answer]) -> Outcome:
    question = ctx.run.message.content
    kind = kind_of(question)
    candidates = await _candidates(ctx, seats, kind)
    if ctx.cancelled:
        return CANCELLED
    if not candidates:
        return all_failed(seats)
    budget = SandboxBudget(ctx.run.config["strategy"]["max_sandbox_runs"])
    if kind == CODE:
        chosen, summary, detail = await _by_code(ctx, candidates, budget)
    elif kind == COMPUTATION:
        chosen, summary, detail = await _by_computation(ctx, candidates, budget)
    else:
        chosen, summary, detail = _by_agreement(ctx, candidates)
    detail |= {"sandbox_runs": budget.made, "candidates_drawn": len(candidates)}
    if chosen is None:
        await ctx.decide(
            "verify",
            "No candidate gave an answer to check or compare: the judge and synthesizer "
            "decide instead",
            **detail,
        )
        return await fuse(ctx, [c.answer for c in candidates if not c.program and not c.sample])
    if isinstance(chosen, Ballot):  # only a program computed the winning answer
        await ctx.decide("verify", summary, **detail)
        await rows.final_from(ctx, chosen.candidate.answer, _computed_text(chosen))
        return Outcome(Run.Status.DONE)
    await ctx.decide("verify", summary, **detail)
    await rows.final_from(ctx, chosen)
    return Outcome(Run.Status.DONE)
