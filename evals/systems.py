"""The systems an evaluation compares, as frozen run configurations.

From one panel: each distinct seat alone, the panel under each strategy (its own
strategy keeps its settings and marks the row as "the panel as saved"), and
self-fusion (the lead seat's model on every seat, judging and synthesizing its own
samples). Besides: any saved panel, any catalog model alone. Every system runs
through the same pipeline as a chat message (chat/engine), so what is measured is
what users get.
"""

from dataclasses import dataclass

from panels import strategy_settings
from panels.models import CatalogModel, Panel, solo_snapshot

SEATS, SELF_FUSION = "seats", "self-fusion"
SELF_FUSION_TEMPERATURE = 0.7  # samples of one model must differ to be worth fusing


class SystemsError(ValueError):
    pass


@dataclass(frozen=True)
class Spec:
    label: str
    kind: str  # evals.models.System.Kind
    config: dict
    panel: Panel | None = None


def _alone(base: dict, seat: dict) -> dict:
    """A panel's seat as a panel of one: no judge, no synthesis."""
    return base | {
        "seats": [seat],
        "judge": None,
        "synthesizer": None,
        "synthesizer_fallback": None,
        "router": None,
        "min_answers": None,
        "strategy": {"name": strategy_settings.FUSION},
    }


def seats_alone(panel: Panel) -> list[Spec]:
    base, specs, seen = panel.snapshot(), [], set()
    for number, seat in enumerate(base["seats"], 1):
        model = seat.get("model") or {}
        same = (model.get("catalog_id"), seat.get("system_prompt"), seat.get("temperature"))
        if same in seen:  # self-consistency's three equal seats are one system
            continue
        seen.add(same)
        specs.append(
            Spec(f"Seat {number} alone: {model.get('name', '?')}", "seat", _alone(base, seat))
        )
    return specs


def with_strategy(panel: Panel, name: str) -> Spec:
    own = name == panel.strategy
    settings = strategy_settings.clean_settings(name, panel.strategy_settings if own else {})
    config = panel.snapshot() | {"strategy": {"name": name, **settings}}
    label = f"{panel.name}: {name}" + (" (as saved)" if own else "")
    return Spec(label, "strategy", config, panel if own else None)


def self_fusion(panel: Panel) -> Spec:
    base = panel.snapshot()
    if not base["seats"]:
        raise SystemsError(f"Panel {panel.name!r} has no seats to take a model from.")
    lead = base["seats"][0]
    model = lead["model"]
    count = max(3, len(base["seats"]))
    temperature = max(lead.get("temperature") or 0, SELF_FUSION_TEMPERATURE)
    config = base | {
        "seats": [lead | {"temperature": temperature} for _ in range(count)],
        "judge": model,
        "synthesizer": model,
        "synthesizer_fallback": None,
        "strategy": {"name": strategy_settings.FUSION},
    }
    return Spec(f"Self-fusion: {count} × {model['name']}", "self", config)


def saved_panel(panel: Panel) -> Spec:
    return Spec(f"Panel {panel.name}", "panel", panel.snapshot(), panel)


def catalog_model(model: CatalogModel) -> Spec:
    return Spec(f"Model {model.display_name}", "model", solo_snapshot(model))


def parse(names: list[str], panel: Panel | None, owner) -> list[Spec]:
    """Systems from names: seats, a strategy name, self-fusion (all of the given
    panel), panel:<slug>, model:<model id>. Unknown names are refused, listed."""
    specs: list[Spec] = []
    for name in (n.strip() for n in names if n.strip()):
        if name.startswith("panel:"):
            slug = name.removeprefix("panel:")
            found = Panel.objects.visible_to(owner).filter(slug=slug).first()
            if found is None:
                raise SystemsError(f"No panel {slug!r} that you may use.")
            specs.append(saved_panel(found))
        elif name.startswith("model:"):
            model_id = name.removeprefix("model:")
            found_model = (
                CatalogModel.objects.usable_by(owner).filter(model_id=model_id).first()
                if owner is not None
                else None
            )
            if found_model is None:
                raise SystemsError(f"No catalog model {model_id!r} that you may use.")
            specs.append(catalog_model(found_model))
        elif name in (SEATS, SELF_FUSION, *strategy_settings.NAMES):
            if panel is None:
                raise SystemsError(f"{name!r} is relative to a panel: give one (--panel).")
            if name == SEATS:
                specs.extend(seats_alone(panel))
            elif name == SELF_FUSION:
                specs.append(self_fusion(panel))
            else:
                specs.append(with_strategy(panel, name))
        else:
            known = ", ".join(
                [SEATS, *strategy_settings.NAMES, SELF_FUSION, "panel:<slug>", "model:<id>"]
            )
            raise SystemsError(f"Unknown system {name!r}. Known: {known}.")
    labels = [spec.label for spec in specs]
    if len(set(labels)) != len(labels):
        raise SystemsError("A system is named twice.")
    if not specs:
        raise SystemsError("Name at least one system.")
    return specs
