"""Calibrating a panel from an evaluation: weights and thresholds from measurement.

Each seat's vote weight becomes the log-odds of its measured accuracy alone, smoothed
((right + 1) / (n + 2), so three right answers out of three is not certainty); a seat
tagged with categories is measured on the items of its categories when the dataset
has any. The weights are then made strictly ordered by accuracy (a tie goes, by a
tiny epsilon, to the seat first in the panel), so two seats that disagree never tie:
the better one is more than half of the weight cast. A gate panel's threshold
becomes the lowest stated confidence above which the first seat was right at least
as often as the evaluation's best system. The result is saved as a new version of
the panel, whose note names the evaluation and every measure it used.
"""

import math
from dataclasses import dataclass

from django.db import transaction

from panels import strategy_settings, versions
from panels.models import Panel, PanelVersion, Seat

from .models import Evaluation, Result, System

# A seat measured worse than a coin still casts a small positive vote: a weight is
# never negative (panels/bounds.py), and the order between seats is what matters.
MIN_WEIGHT = 0.05
# How far a seat's weight is raised above the next seat's when their accuracies tie.
EPSILON = 0.001


class Unavailable(Exception):
    """This evaluation cannot calibrate a panel; the message says why."""


class NotEditable(Exception):
    """The panel is not the user's to change."""


@dataclass(frozen=True)
class SeatMeasure:
    seat: Seat
    number: int  # 1-based, in panel order
    right: float
    n: int
    scope: str  # "all items" or "category x, y"

    @property
    def accuracy(self) -> float:
        return (self.right + 1) / (self.n + 2)

    @property
    def log_odds(self) -> float:
        return math.log(self.accuracy / (1 - self.accuracy))


def _seat_key(seat: dict) -> tuple:
    """What makes two seats one system alone (evals/systems.py `seats_alone`)."""
    model = seat.get("model") or {}
    return (model.get("catalog_id"), seat.get("system_prompt"), seat.get("temperature"))


def seat_systems(evaluation: Evaluation) -> list[System]:
    return list(evaluation.systems.filter(kind=System.Kind.SEAT))


def panel_of(evaluation: Evaluation) -> Panel | None:
    """The panel whose seats were measured alone."""
    for system in seat_systems(evaluation):
        named = system.config.get("panel") or {}
        if named.get("id") and (panel := Panel.objects.filter(pk=named["id"]).first()):
            return panel
    return None


def unavailable_reason(evaluation: Evaluation, user) -> str:
    """Why the evaluation's page cannot offer calibration; empty when it can."""
    if evaluation.is_active:
        return "The evaluation is still running: calibrate once it has stopped."
    if not seat_systems(evaluation):
        return (
            "This evaluation measured no seat alone (the “each seat alone” systems), so "
            "there is no per-seat accuracy to weigh the seats by."
        )
    panel = panel_of(evaluation)
    if panel is None:
        return "The panel whose seats were measured no longer exists."
    if panel.owner_id != user.pk:
        return f"{panel.name} is not yours to change: customize it, then evaluate your copy."
    return ""


def _value(result: Result) -> float:
    """Right is 1, wrong 0, a rubric's score in between (as evals/report.py counts)."""
    return float(result.score if result.score is not None else bool(result.correct))


def _measure(seat: Seat, number: int, system: System) -> SeatMeasure:
    graded = Result.objects.filter(system=system, status=Result.Status.GRADED)
    results, scope = list(graded.select_related("item")), "all items"
    mine = [r for r in results if r.item.category in seat.tags]
    if mine:  # a tagged seat, on the items of its categories
        results, scope = mine, "category " + ", ".join(seat.tags)
    return SeatMeasure(seat, number, sum(map(_value, results)), len(results), scope)


def measure(evaluation: Evaluation, panel: Panel) -> list[SeatMeasure]:
    """Every seat of the panel, in order, with its accuracy alone in this evaluation."""
    by_key = {_seat_key(s.config["seats"][0]): s for s in seat_systems(evaluation)}
    measures = []
    for number, seat in enumerate(panel.seats.select_related("model__provider"), 1):
        system = by_key.get(_seat_key(seat.snapshot()))
        if system is None:
            raise Unavailable(
                f"Seat {number} ({seat}) was not measured alone in this evaluation: the panel "
                "has changed since. Evaluate it again, then calibrate."
            )
        measures.append(_measure(seat, number, system))
    return measures


def ordered_weights(measures: list[SeatMeasure]) -> list[float]:
    """Log-odds weights, strictly ordered by accuracy, ties to the earlier seat."""
    ranked = sorted(range(len(measures)), key=lambda i: (-measures[i].accuracy, i))
    weights = [0.0] * len(measures)
    below = None
    for i in reversed(ranked):  # from the weakest seat up
        weight = max(measures[i].log_odds, MIN_WEIGHT)
        if below is not None:
            weight = max(weight, below + EPSILON)
        weights[i] = below = round(weight, 4)
    return weights


def _stated_confidence(result: Result) -> float | None:
    """The gate's confidence on this item, from its run's decision."""
    if result.run is None:
        return None
    for decision in result.run.decisions:
        if decision.get("stage") == "gate":
            return (decision.get("detail") or {}).get("confidence")
    return None


def confidence_pairs(evaluation: Evaluation, first: SeatMeasure) -> list[tuple[float, float]]:
    """(stated confidence, whether the first seat alone was right) for each item the
    evaluation's gate system answered: the same items, paired."""
    gates = [
        s
        for s in evaluation.systems.all()
        if (s.config.get("strategy") or {}).get("name") == "gate"
    ]
    first_key = _seat_key(first.seat.snapshot())
    alone = next(
        s for s in seat_systems(evaluation) if _seat_key(s.config["seats"][0]) == first_key
    )
    right = {
        r.item_id: _value(r)
        for r in Result.objects.filter(system=alone, status=Result.Status.GRADED)
    }
    pairs = []
    for result in Result.objects.filter(system__in=gates).select_related("run"):
        stated = _stated_confidence(result)
        if stated is not None and result.item_id in right:
            pairs.append((float(stated), right[result.item_id]))
    return pairs


def gate_threshold(pairs: list[tuple[float, float]], target: float) -> float:
    """The lowest stated confidence above which the first seat's smoothed accuracy
    reaches `target`; 1.0 when it never does (the panel then nearly always answers)."""
    for threshold in sorted({stated for stated, _ in pairs}):
        above = [right for stated, right in pairs if stated >= threshold]
        if (sum(above) + 1) / (len(above) + 2) >= target:
            return round(threshold, 2)
    return 1.0


def best_accuracy(evaluation: Evaluation) -> float:
    """The highest raw accuracy among the evaluation's systems: what the panel can reach."""
    best = 0.0
    for system in evaluation.systems.all():
        values = [
            _value(r) for r in Result.objects.filter(system=system, status=Result.Status.GRADED)
        ]
        if values:
            best = max(best, sum(values) / len(values))
    return best


def _threshold_note(
    panel: Panel, evaluation: Evaluation, first: SeatMeasure
) -> tuple[float | None, str]:
    """The gate's new threshold (None: unchanged) and a sentence about it."""
    pairs = confidence_pairs(evaluation, first)
    if not pairs:
        return None, "Gate threshold unchanged: the evaluation recorded no stated confidences."
    target = best_accuracy(evaluation)
    threshold = gate_threshold(pairs, target)
    measured = (
        f"from {len(pairs)} stated confidences, the first seat is right at least as often as "
        f"the best system ({target:.0%}) at {threshold:.2f} and above"
    )
    if panel.strategy != strategy_settings.GATE:
        return None, f"Gate threshold unchanged (not a gate panel); {measured}."
    return threshold, f"Gate threshold {threshold:.2f}: {measured}."


def note(evaluation: Evaluation, measures: list[SeatMeasure], weights: list[float]) -> str:
    items = len(evaluation.item_ids) or evaluation.dataset.item_count
    seats = "; ".join(
        f"seat {m.number} ({m.seat.model.display_name if m.seat.model else 'removed model'}) "
        f"{m.right:g}/{m.n} right on {m.scope}, weight {w:g}"
        for m, w in zip(measures, weights, strict=True)
    )
    return (
        f"Calibrated from evaluation “{evaluation.name}” (#{evaluation.pk}, "
        f"{evaluation.created_at:%Y-%m-%d}, {items} items): {seats}."
    )


@transaction.atomic
def calibrate(evaluation: Evaluation, user) -> PanelVersion:
    """Set the panel's seat weights (and a gate's threshold) from this evaluation's
    measurements, and keep it as the panel's next version."""
    panel = panel_of(evaluation)
    if panel is not None and panel.owner_id != user.pk:
        raise NotEditable(f"{panel.name} is not yours to change.")
    if reason := unavailable_reason(evaluation, user):
        raise Unavailable(reason)
    assert panel is not None  # unavailable_reason said so
    measures = measure(evaluation, panel)
    weights = ordered_weights(measures)
    for seat_measure, weight in zip(measures, weights, strict=True):
        Seat.objects.filter(pk=seat_measure.seat.pk).update(weight=weight)
    threshold, threshold_note = _threshold_note(panel, evaluation, measures[0])
    if threshold is not None:
        raw = {**panel.strategy_settings, "threshold": threshold}
        panel.strategy_settings = strategy_settings.clean_settings(panel.strategy, raw)
        panel.save(update_fields=["strategy_settings", "updated_at"])
    return versions.record_version(
        panel, note=f"{note(evaluation, measures, weights)} {threshold_note}"
    )
