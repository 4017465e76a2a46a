"""Calibrating a panel from an evaluation: weights follow the measured accuracies,
strictly ordered; a gate's threshold from stated confidences; only the owner of both
the evaluation and the panel may do it; the page explains when it cannot."""

import math

import pytest
from django.core.management import call_command
from django.urls import reverse

from evals import calibration
from panels.models import Panel
from tests.calibration_kit import (
    add_gate_runs,
    evaluation_of,
    evaluation_without_seats,
    panel_of_two,
)

pytestmark = pytest.mark.django_db


def _weights(panel: Panel) -> list[float]:
    return [seat.weight for seat in panel.seats.order_by("position")]


def _log_odds(right: int, n: int) -> float:
    accuracy = (right + 1) / (n + 2)
    return math.log(accuracy / (1 - accuracy))


def test_calibrated_weights_follow_the_measured_accuracies(alice):
    panel = panel_of_two(alice)
    # Seat 1 right on 5 of 8, seat 2 on 7 of 8.
    evaluation = evaluation_of(alice, panel, [[True] * 5 + [False] * 3, [True] * 7 + [False]])
    version = calibration.calibrate(evaluation, alice)

    assert (version.number, Panel.objects.get(pk=panel.pk).version) == (1, 1)
    recipe_weights = [seat["weight"] for seat in version.recipe["seats"]]
    assert (
        recipe_weights
        == _weights(panel)
        == [
            round(_log_odds(5, 8), 4),
            round(_log_odds(7, 8), 4),
        ]
    )
    assert recipe_weights[1] > recipe_weights[0]
    assert version.changes.startswith(
        f"Calibrated from evaluation “Sums, both seats” (#{evaluation.pk}, "
        f"{evaluation.created_at:%Y-%m-%d}, 8 items): seat 1 (Small) 5/8 right on all items, "
    )
    assert "seat 2 (Large) 7/8 right on all items" in version.changes
    assert "Gate threshold unchanged: the evaluation recorded no stated confidences." in (
        version.changes
    )


def test_equal_accuracies_are_ordered_toward_the_first_seat(alice):
    panel = panel_of_two(alice)
    evaluation = evaluation_of(alice, panel, [[True, False], [False, True]])
    calibration.calibrate(evaluation, alice)
    first, second = _weights(panel)
    assert first == pytest.approx(second + calibration.EPSILON)


def test_a_seat_worse_than_a_coin_keeps_a_small_positive_weight(alice):
    panel = panel_of_two(alice)
    evaluation = evaluation_of(alice, panel, [[False] * 4, [False] * 3 + [True]])
    calibration.calibrate(evaluation, alice)
    # Both log-odds are negative; the better seat (the second) still weighs more.
    assert _weights(panel) == [0.05, 0.051]  # MIN_WEIGHT, then EPSILON above it


def test_a_tagged_seat_is_measured_on_its_categories(alice):
    panel = panel_of_two(alice, tags=(("math",), ()))
    categories = ["math", "math", "history", "history"]
    # Seat 1: right on both math items, wrong on history; seat 2: 3 of 4 overall.
    evaluation = evaluation_of(
        alice, panel, [[True, True, False, False], [True, True, True, False]], categories
    )
    version = calibration.calibrate(evaluation, alice)
    assert "seat 1 (Small) 2/2 right on category math" in version.changes
    assert _weights(panel) == [round(_log_odds(2, 2), 4), round(_log_odds(3, 4), 4)]


def test_the_gate_threshold_is_the_lowest_confidence_that_reaches_the_target():
    pairs = [(0.3, 0.0), (0.5, 0.0), (0.7, 1.0), (0.8, 1.0), (0.9, 1.0), (0.95, 1.0)]
    # Above 0.7: 4 of 4 right, (4+1)/(4+2) = 0.83; above 0.5: (4+1)/(5+2) = 0.71.
    assert calibration.gate_threshold(pairs, target=0.8) == 0.7
    assert calibration.gate_threshold(pairs, target=0.7) == 0.5
    assert calibration.gate_threshold(pairs, target=0.9) == 1.0


def test_the_command_calibrates_and_prints_the_note(alice, capsys):
    panel = panel_of_two(alice)
    evaluation = evaluation_of(alice, panel, [[True, False, False], [True, True, False]])
    call_command("fusion_eval", "--calibrate", str(evaluation.pk), "--user", "alice")
    out = capsys.readouterr().out
    assert out.startswith("Measured version 1: Calibrated from evaluation “Sums, both seats”")
    assert _weights(panel)[1] > _weights(panel)[0]


def test_someone_elses_evaluation_is_a_404_and_someone_elses_panel_a_403(alice, bob, client):
    panel = panel_of_two(alice)
    evaluation = evaluation_of(alice, panel, [[True], [False]])
    client.force_login(bob)
    assert client.post(reverse("evals:calibrate", args=[evaluation.pk])).status_code == 404

    # Bob's evaluation of alice's (public) panel: he may not change her panel.
    evaluation.owner = bob
    evaluation.save()
    response = client.post(reverse("evals:calibrate", args=[evaluation.pk]))
    assert response.status_code == 403
    assert panel.versions.count() == 0 and _weights(panel) == [1.0, 1.0]
    page = client.get(evaluation.get_absolute_url()).content.decode()
    assert "Measured is not yours to change" in page
    assert "Calibrate the panel from these results" not in page


def test_an_evaluation_without_seats_alone_says_why_it_cannot_calibrate(alice, client):
    panel = panel_of_two(alice)
    evaluation = evaluation_without_seats(alice, panel.seats.first().model)
    client.force_login(alice)
    page = client.get(evaluation.get_absolute_url()).content.decode()
    assert "Calibration unavailable: This evaluation measured no seat alone" in page
    assert "Calibrate the panel from these results" not in page
    response = client.post(reverse("evals:calibrate", args=[evaluation.pk]), follow=True)
    assert "measured no seat alone" in response.content.decode()


def test_a_gate_panels_threshold_comes_from_its_stated_confidences(alice):
    panel = panel_of_two(alice, strategy="gate")
    # The first seat alone: wrong where it stated 0.3 and 0.5, right from 0.7 up; the
    # second seat alone is right on 5 of 6 (the best accuracy, 0.83).
    first = [False, False, True, True, True, True]
    evaluation = evaluation_of(alice, panel, [first, [True] * 5 + [False]])
    # The gate itself: right on 5 of 6 too.
    add_gate_runs(evaluation, panel, [0.3, 0.5, 0.7, 0.8, 0.9, 0.95], [False] + [True] * 5)
    version = calibration.calibrate(evaluation, alice)
    panel.refresh_from_db()
    # From 0.7 up: 4 of 4, smoothed (4+1)/(4+2) = 0.83, the best system's accuracy.
    assert panel.strategy_settings["threshold"] == 0.7
    assert version.recipe["strategy"]["threshold"] == 0.7
    assert "Gate threshold 0.70: from 6 stated confidences" in version.changes
