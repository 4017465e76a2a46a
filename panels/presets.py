"""The read-only panels everyone sees, as data.

- Local: the bundled models; works with no key at all (strategy: vote, by measurement).
- Quality: frontier models through OpenRouter; a frontier judge and synthesizer.
- Budget: three low-cost models through OpenRouter; a frontier synthesizer (most of
  fusion's gain comes from the synthesis step, so that is where money goes).

A preset whose models are missing (no OPENROUTER_API_KEY) is simply not offered.
"""

from dataclasses import dataclass

from django.db import transaction


@dataclass(frozen=True)
class SeatSpec:
    model_id: str
    temperature: float | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class PresetSpec:
    slug: str
    name: str
    description: str
    seats: tuple[SeatSpec, ...]
    judge: str
    synthesizer: str
    deadline_s: float
    strategy: str = "fusion"
    settings: tuple[tuple[str, object], ...] = ()
    router: str | None = None


PRESETS = (
    PresetSpec(
        "local",
        "Local",
        "The bundled models on this machine: Qwen2.5-Coder 1.5B and 0.5B answer and vote; "
        "when they disagree the 1.5B breaks the tie. Free and private. Measured: no strategy "
        "of this panel beats the 1.5B alone; vote loses least (docs/QUALITY.md).",
        # The 1.5B answered 15 of 16 short factual and arithmetic questions alone, the
        # 0.5B 10 and SmolLM2 9 (docs/LOCAL_MODELS.md): the 1.5B holds a seat, SmolLM2
        # does not (a third process on two cores would slow the 1.5B's answer).
        # The strategy is chosen by the evaluation harness (docs/QUALITY.md): against
        # the 1.5B alone, vote lost 3 and 6 points on short answers and multiple
        # choice (not significant), at 16-19 s an item; fusion tied, then lost 31 and
        # 37 points on multiple choice and code (its synthesis rewrote right answers)
        # at 44-97 s; gate lost 19. A vote returns a seat's answer as it was written.
        (SeatSpec("qwen2.5-coder-1.5b", 0.3), SeatSpec("qwen2.5-coder-0.5b", 0.3)),
        judge="qwen2.5-coder-1.5b",
        synthesizer="qwen2.5-coder-1.5b",
        deadline_s=180,
        strategy="vote",
    ),
    PresetSpec(
        "self-consistency",
        "Self-consistency (local)",
        "The bundled Qwen2.5-Coder 1.5B answers three times at temperature 0.7 and the "
        "majority's answer wins (the same model breaks a tie). Best for questions with one "
        "short right answer: numbers, yes/no, a choice.",
        (
            SeatSpec("qwen2.5-coder-1.5b", 0.7),
            SeatSpec("qwen2.5-coder-1.5b", 0.7),
            SeatSpec("qwen2.5-coder-1.5b", 0.7),
        ),
        judge="qwen2.5-coder-1.5b",
        synthesizer="qwen2.5-coder-1.5b",
        deadline_s=180,
        strategy="vote",
    ),
    PresetSpec(
        "local-router",
        "Local router",
        "An example of routing: the 0.5B reads each question and names its category; "
        "reasoning, code and factual questions go to the 1.5B, creative and other ones to "
        "the 0.5B; when the router is unsure both answer and the 1.5B synthesizes.",
        (
            SeatSpec("qwen2.5-coder-1.5b", 0.3, ("reasoning", "code", "factual")),
            SeatSpec("qwen2.5-coder-0.5b", 0.5, ("creative", "other")),
        ),
        judge="qwen2.5-coder-1.5b",
        synthesizer="qwen2.5-coder-1.5b",
        deadline_s=180,
        strategy="route",
        settings=(("threshold", 0.6),),
        router="qwen2.5-coder-0.5b",
    ),
    PresetSpec(
        "quality",
        "Quality",
        "Frontier models side by side (Claude Sonnet 4, GPT-4.1, Gemini 2.5 Flash); "
        "Claude Sonnet 4 judges and synthesizes. Needs OPENROUTER_API_KEY.",
        (
            SeatSpec("anthropic/claude-sonnet-4"),
            SeatSpec("openai/gpt-4.1"),
            SeatSpec("google/gemini-2.5-flash"),
        ),
        judge="anthropic/claude-sonnet-4",
        synthesizer="anthropic/claude-sonnet-4",
        deadline_s=120,
    ),
    PresetSpec(
        "budget",
        "Budget",
        "Three low-cost models (GPT-4o mini, DeepSeek V3, Llama 3.3 70B); GPT-4o mini "
        "judges, Claude Sonnet 4 synthesizes. Needs OPENROUTER_API_KEY.",
        (
            SeatSpec("openai/gpt-4o-mini"),
            SeatSpec("deepseek/deepseek-chat"),
            SeatSpec("meta-llama/llama-3.3-70b-instruct"),
        ),
        judge="openai/gpt-4o-mini",
        synthesizer="anthropic/claude-sonnet-4",
        deadline_s=90,
    ),
)


def sync_presets() -> list[str]:
    """Create or refresh every preset whose models the site has. Idempotent."""
    from .models import CatalogModel, Panel, Seat

    site_models = CatalogModel.objects.filter(provider__owner=None, is_active=True)
    done = []
    for spec in PRESETS:
        wanted = {s.model_id for s in spec.seats} | {spec.judge, spec.synthesizer}
        wanted |= {spec.router} if spec.router else set()
        found = {m.model_id: m for m in site_models.filter(model_id__in=wanted)}
        if wanted - set(found):
            Panel.objects.filter(owner=None, slug=spec.slug).delete()
            continue
        with transaction.atomic():
            panel, _ = Panel.objects.update_or_create(
                owner=None,
                slug=spec.slug,
                defaults={
                    "name": spec.name,
                    "description": spec.description,
                    "visibility": Panel.Visibility.PUBLIC,
                    "judge": found[spec.judge],
                    "synthesizer": found[spec.synthesizer],
                    "deadline_s": spec.deadline_s,
                    "strategy": spec.strategy,
                    "strategy_settings": dict(spec.settings),
                    "router": found[spec.router] if spec.router else None,
                },
            )
            panel.seats.all().delete()
            Seat.objects.bulk_create(
                Seat(
                    panel=panel,
                    position=i,
                    model=found[s.model_id],
                    temperature=s.temperature,
                    tags=list(s.tags),
                )
                for i, s in enumerate(spec.seats)
            )
        done.append(f"preset {spec.name}: {len(spec.seats)} seats")
    return done
