"""The read-only panels everyone sees, as data.

- Local: the bundled 1.5B, verified (strategy: verify); works with no key at all.
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
        "The bundled Qwen2.5-Coder 1.5B answers three times; the answers are checked, not "
        "rewritten: code runs against the question's own examples, a sum is computed by a "
        "program, anything else goes to the answer its draws agree on. Free and private. "
        "Measured against the 1.5B alone in docs/QUALITY.md.",
        # Chosen from measurement (docs/QUALITY.md): judging and rewriting lost to the
        # 1.5B alone on every set (fusion -31 and -37 points on multiple choice and
        # code, its synthesis rewrote right answers), and a vote of the 1.5B with the
        # 0.5B lost a little wherever they disagreed. Verification keeps an answer as
        # written. The 0.5B is left out: on questions with no check, SLM-MUX's "most
        # self-consistent seat" would let a confidently wrong 0.5B (52% on short
        # answers against the 1.5B's 78%) outvote a split 1.5B.
        (SeatSpec("qwen2.5-coder-1.5b", 0.3),),
        judge="qwen2.5-coder-1.5b",
        synthesizer="qwen2.5-coder-1.5b",
        deadline_s=240,
        strategy="verify",
        settings=(("samples", 2), ("temperature", 0.8)),
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
