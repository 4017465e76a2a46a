"""What one run of a panel may cost, before running it.

Token counts are assumptions, stated on the page: a typical question of about 150
tokens (or the user's own prompt, measured at ~4 characters a token); each seat
answers 150 to `max_tokens` tokens; the judge reads every answer and writes 300 to
800; the synthesizer reads the answers and the analysis and writes 200 to 800.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from .models import CatalogModel, Panel

TYPICAL_QUESTION_TOKENS = 150
PROMPT_OVERHEAD = 120  # system prompt and framing of each call
JUDGE_OUT = (300, 800)
SYNTH_OUT = (200, 800)


@dataclass
class Line:
    label: str
    model: str
    low: Decimal | None
    high: Decimal | None


def call_cost(model: CatalogModel | None, tokens_in: int, tokens_out: int) -> Decimal | None:
    prices = model.price_per_token() if model else None
    if prices is None:
        return None
    return prices[0] * tokens_in + prices[1] * tokens_out


def estimate(panel: Panel, prompt: str = "") -> dict:
    question = max(1, len(prompt) // 4) if prompt else TYPICAL_QUESTION_TOKENS
    seats = list(panel.seats.select_related("model__provider").order_by("position"))
    lines: list[Line] = []
    answers_low = answers_high = 0
    for seat in seats:
        top = seat.max_tokens or settings.DEFAULT_MAX_TOKENS
        low_out, high_out = min(150, top), top
        answers_low, answers_high = answers_low + low_out, answers_high + high_out
        tokens_in = question + PROMPT_OVERHEAD
        lines.append(
            Line(
                f"Seat {seat.position + 1}",
                seat.model.display_name if seat.model else "(removed model)",
                call_cost(seat.model, tokens_in, low_out),
                call_cost(seat.model, tokens_in, high_out),
            )
        )
    judge_in = (
        question + PROMPT_OVERHEAD * 4 + answers_low,
        question + PROMPT_OVERHEAD * 4 + answers_high,
    )
    lines.append(
        Line(
            "Judge",
            panel.judge.display_name if panel.judge else "none",
            call_cost(panel.judge, judge_in[0], JUDGE_OUT[0]),
            call_cost(panel.judge, judge_in[1], JUDGE_OUT[1]),
        )
    )
    if not panel.judge_drafts:
        synth = panel.synthesizer or panel.judge
        lines.append(
            Line(
                "Synthesis",
                synth.display_name if synth else "none",
                call_cost(synth, judge_in[0] + JUDGE_OUT[0], SYNTH_OUT[0]),
                call_cost(synth, judge_in[1] + JUDGE_OUT[1], SYNTH_OUT[1]),
            )
        )
    known = all(line.low is not None for line in lines)
    seat_highs = [line.high for line in lines[: len(seats)]]
    return {
        "lines": lines,
        "low": sum((line.low for line in lines), Decimal(0)) if known else None,
        "high": sum((line.high for line in lines), Decimal(0)) if known else None,
        "solo_high": max(seat_highs) if seat_highs and None not in seat_highs else None,
        "question_tokens": question,
        "from_prompt": bool(prompt),
    }
