"""The calibrate button on an evaluation's page makes a new version of the measured
panel, in Chromium; a screenshot of the evaluation's page goes to docs/screenshots/."""

from pathlib import Path

import pytest

from panels.models import Panel
from tests.calibration_kit import evaluation_of, panel_of_two
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def test_the_calibrate_button_makes_a_new_panel_version(live_server, alice, page):
    panel = panel_of_two(alice)
    evaluation = evaluation_of(alice, panel, [[True, False, True, False], [True] * 4])
    base = live_server.url
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("form button:has-text('Log in')")
    page.wait_for_url(f"{base}/")

    page.goto(f"{base}{evaluation.get_absolute_url()}")
    button = page.get_by_role("button", name="Calibrate the panel from these results")
    button.scroll_into_view_if_needed()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "evaluation-calibrate.png"), full_page=True)
    button.click()
    page.wait_for_url(f"{base}/p/{panel.slug}/")

    assert "Calibrated: Measured is now version 1." in page.inner_text("body")
    version = Panel.objects.get(pk=panel.pk).versions.get()
    assert version.changes.startswith("Calibrated from evaluation “Sums, both seats”")
    assert page.get_by_text(version.changes[:60]).count() == 1
    weights = [seat["weight"] for seat in version.recipe["seats"]]
    assert weights[1] > weights[0]
    page.screenshot(path=str(SCREENSHOTS / "panel-calibrated-version.png"), full_page=True)
