"""What one run of a panel may cost, before running it.

Token counts are assumptions, stated on the page: a typical question of about 150
tokens (or the user's own prompt, measured at ~4 characters a token); each seat
answers 150 to `max_tokens` tokens; the judge reads every answer and writes 300 to
800; the synthesizer reads the answers and the analysis and writes 200 to 800.
"""

from collections.abc import Callable
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
    # The catalog entry priced, when it still exists (budgets ask whose it is).
    catalog_model: CatalogModel | None = None


def call_cost(model: CatalogModel | None, tokens_in: int, tokens_out: int) -> Decimal | None:
    prices = model.price_per_token() if model else None
    if prices is None:
        return None
    return prices[0] * tokens_in + prices[1] * tokens_out


PriceOf = Callable[[CatalogModel | None], tuple[Decimal, Decimal] | None]


def _catalog_price(model: CatalogModel | None) -> tuple[Decimal, Decimal] | None:
    return model.price_per_token() if model else None


def _cost(prices: tuple[Decimal, Decimal] | None, tokens_in: int, tokens_out: int):
    return None if prices is None else prices[0] * tokens_in + prices[1] * tokens_out


def estimate(panel: Panel, prompt: str = "") -> dict:
    """The builder's estimate of one run of `panel` (the panel page shows it)."""
    return estimate_config(panel.snapshot(), prompt)


def estimate_config(
    config: dict,
    prompt: str = "",
    prices: PriceOf | None = None,
    seat_inputs: list[int] | None = None,
) -> dict:
    """The estimate of one run of a frozen configuration (Panel.snapshot or a
    single model's): what the panel page shows, and what budgets check. `prices`
    says what a model costs a token (budgets count only the site's providers, and
    an unknown price as the dearest); by default, its catalog price. `seat_inputs`,
    when known, are the input tokens each seat will be sent (its system prompt, the
    conversation fitted to its window, tools and schemas): admission measures them;
    else a seat reads the question and the prompt's framing."""
    price_of = prices or _catalog_price
    question = max(1, len(prompt) // 4) if prompt else TYPICAL_QUESTION_TOKENS
    seats = config.get("seats", [])
    refs = [seat.get("model") for seat in seats]
    refs += [config.get("judge"), config.get("synthesizer")]
    models = CatalogModel.objects.select_related("provider").in_bulk(
        [ref["catalog_id"] for ref in refs if ref]
    )

    def model_of(ref: dict | None) -> CatalogModel | None:
        return models.get(ref["catalog_id"]) if ref else None

    def name_of(ref: dict | None, missing: str) -> str:
        model = model_of(ref)
        return model.display_name if model else (ref or {}).get("name", missing)

    lines: list[Line] = []
    answers_low = answers_high = 0
    for position, seat in enumerate(seats):
        top = seat.get("max_tokens") or settings.DEFAULT_MAX_TOKENS
        low_out, high_out = min(150, top), top
        answers_low, answers_high = answers_low + low_out, answers_high + high_out
        tokens_in = seat_inputs[position] if seat_inputs else question + PROMPT_OVERHEAD
        model = model_of(seat.get("model"))
        lines.append(
            Line(
                f"Seat {position + 1}",
                name_of(seat.get("model"), "(removed model)"),
                _cost(price_of(model), tokens_in, low_out),
                _cost(price_of(model), tokens_in, high_out),
                model,
            )
        )
    judge_in = (
        question + PROMPT_OVERHEAD * 4 + answers_low,
        question + PROMPT_OVERHEAD * 4 + answers_high,
    )
    if judge := config.get("judge"):
        model = model_of(judge)
        lines.append(
            Line(
                "Judge",
                name_of(judge, "(removed model)"),
                _cost(price_of(model), judge_in[0], JUDGE_OUT[0]),
                _cost(price_of(model), judge_in[1], JUDGE_OUT[1]),
                model,
            )
        )
    synth = config.get("synthesizer")
    if judge and synth and not config.get("judge_drafts"):
        model = model_of(synth)
        lines.append(
            Line(
                "Synthesis",
                name_of(synth, "(removed model)"),
                _cost(price_of(model), judge_in[0] + JUDGE_OUT[0], SYNTH_OUT[0]),
                _cost(price_of(model), judge_in[1] + JUDGE_OUT[1], SYNTH_OUT[1]),
                model,
            )
        )
    # A line's low and high are both priced or both not (one price for the model).
    lows = [line.low for line in lines if line.low is not None]
    highs = [line.high for line in lines if line.high is not None]
    known = len(lows) == len(lines)
    seat_highs = [line.high for line in lines[: len(seats)] if line.high is not None]
    return {
        "lines": lines,
        "low": sum(lows, Decimal(0)) if known else None,
        "high": sum(highs, Decimal(0)) if known else None,
        "solo_high": max(seat_highs) if seats and len(seat_highs) == len(seats) else None,
        "question_tokens": question,
        "from_prompt": bool(prompt),
    }
