"""An evaluation started from the browser on the bundled models: the page shows the
progress bar while the worker runs it, survives a reload, and ends with the same
table the command prints (computed by evals.report from the same rows). A
screenshot goes to docs/screenshots/.

Real models, so it runs once, in the SQLite pass, on two items."""

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from evals import datasets, report
from evals.models import Evaluation
from panels.catalog import sync_site_providers
from panels.presets import sync_presets
from tests.conftest import log_in

pytestmark = [
    pytest.mark.stack,
    pytest.mark.browser,
    pytest.mark.models,
    pytest.mark.django_db(transaction=True),
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


@pytest.fixture
def owner(live_stack):
    if connection.vendor != "sqlite":
        pytest.skip("real-model answers do not depend on the database: run in the SQLite pass")
    sync_site_providers()
    sync_presets()
    datasets.sync_shipped()
    return get_user_model().objects.create_user("evaluator", password="pw-long-enough-1")


def test_an_evaluation_started_in_the_browser_shows_progress_and_the_table(live_stack, owner, page):
    base = live_stack.url
    log_in(page, base, "evaluator")

    page.click("nav >> text=Evaluations")
    page.wait_for_url(f"{base}/evaluations/")
    assert page.locator("#id_dataset option:checked").inner_text().startswith("Development set")
    page.fill("#id_item_limit", "1")  # real decoding: one item is enough
    assert page.locator("#id_panel option:checked").inner_text() == "Local"
    checked = page.locator("input[name=from_panel]:checked")
    assert [checked.nth(i).get_attribute("value") for i in range(checked.count())] == [
        "seats",
        "fusion",
        "vote",
    ]
    page.click("button:has-text('Start evaluation')")
    page.wait_for_url(f"{base}/evaluations/*/")
    evaluation = Evaluation.objects.get(owner=owner)
    assert evaluation.total == 3  # 1 item × (Local's one seat alone, fusion, vote)

    progress = page.locator("#progress")
    page.wait_for_function(
        "() => ['running', 'done'].includes(document.getElementById('progress').dataset.status)",
        timeout=60_000,
    )
    page.reload()  # the evaluation lives on the server: a reload changes nothing
    page.wait_for_function(
        "() => document.querySelector('#progress progress').value >= 1", timeout=240_000
    )
    assert "of 3 runs" in progress.inner_text()
    page.wait_for_function(
        "() => document.getElementById('progress').dataset.status === 'done'", timeout=400_000
    )
    page.wait_for_load_state()
    assert "3 of 3 runs" in progress.inner_text()

    evaluation.refresh_from_db()
    summary = report.summarise(evaluation)
    shown = [
        [cell.inner_text().strip() for cell in row.locator("th, td").all()]
        for row in page.locator("#results-table tbody tr").all()
    ]
    assert shown == [[c or "—" for c in cells] for cells in report.table_rows(summary)]
    assert page.locator(".item-grid .cell").count() == 3
    assert page.locator(".chart img").evaluate("img => img.naturalWidth") > 0
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "evaluation.png"), full_page=True)

    page.locator(".item-grid a").first.click()
    page.wait_for_url(f"{base}/evaluations/{evaluation.pk}/items/*/")
    assert page.locator(".eval-answer").count() == 3
    assert page.get_by_text("Right answer:", exact=True).is_visible()

    csv_response = page.request.get(f"{base}/evaluations/{evaluation.pk}/results.csv")
    assert csv_response.ok and csv_response.text().count("\n") >= 4
    other = page.request.get(f"{base}/evaluations/{evaluation.pk + 1000}/")
    assert other.status == 404
