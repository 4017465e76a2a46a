"""Panels in the browser, end to end with the real local models: build a panel of
three local seats without typing JSON, run it in the chatroom, share it unlisted,
open and fork it as another user, export and re-import its recipe."""

import json

import pytest
from django.contrib.auth import get_user_model

from panels import recipes
from panels.models import Panel
from tests.conftest import ARTIFACTS, PASSWORD

pytestmark = [
    pytest.mark.stack,
    pytest.mark.browser,
    pytest.mark.models,
    pytest.mark.django_db(transaction=True),
]
QWEN, SMOL = "Qwen2.5-Coder 0.5B Instruct (local)", "SmolLM2 135M Instruct (local)"


def log_in(context, base, username):
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("form button:has-text('Log in')")
    page.wait_for_url(f"{base}/")
    return page


def pick(page, selector, label_start):
    value = page.eval_on_selector(
        selector,
        "(el, start) => [...el.options].find(o => o.textContent.startsWith(start)).value",
        label_start,
    )
    page.select_option(selector, value)


def test_build_run_share_fork_and_round_trip_a_panel(live_stack, browser, smollm2):
    base = live_stack.url
    for name in ("alice", "bob"):
        get_user_model().objects.create_user(name, password=PASSWORD)
    alice_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    alice = log_in(alice_ctx, base, "alice")

    alice.goto(f"{base}/panels/new/")
    alice.fill("#id_name", "Three locals")
    alice.select_option("#id_visibility", "unlisted")
    alice.click("[data-role=add-seat]")
    alice.click("[data-role=add-seat]")
    for i, (model, temperature) in enumerate([(QWEN, "0.2"), (SMOL, "0.5"), (QWEN, "0.9")]):
        pick(alice, f"#id_seats-{i}-model", model)
        alice.fill(f"#id_seats-{i}-temperature", temperature)
    pick(alice, "#id_judge", QWEN)
    alice.screenshot(path=str(ARTIFACTS / "panel-builder.png"), full_page=True)
    alice.click("button:has-text('Save panel')")
    alice.wait_for_url(f"{base}/p/*/")
    panel = Panel.objects.get(owner__username="alice")
    assert [s.temperature for s in panel.seats.order_by("position")] == [0.2, 0.5, 0.9]
    assert panel.visibility == "unlisted"

    # Run it in the chatroom, with the real local models.
    alice.click("button:has-text('Use in chat')")
    alice.wait_for_url(f"{base}/c/*/")
    alice.fill("#id_content", "Is 17 a prime number?")
    alice.click(".composer button[type=submit]")
    alice.locator(".run[data-status=done], .run[data-status=failed]").wait_for(timeout=240_000)
    assert alice.locator(".run").first.get_attribute("data-status") == "done"
    alice.click(".how > summary")
    assert alice.locator(".seats .answer").count() == 3

    # Bob opens the unlisted link, forks it; he cannot edit alice's.
    bob_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    bob = log_in(bob_ctx, base, "bob")
    bob.goto(f"{base}/p/{panel.slug}/")
    assert "Three locals" in bob.content() and "Edit" not in bob.locator(".actions").inner_text()
    bob.goto(f"{base}/panels/gallery/")
    assert "Three locals" not in bob.content()  # unlisted: not in the gallery
    bob.goto(f"{base}/p/{panel.slug}/")
    bob.click("button:has-text('Fork')")
    bob.wait_for_url(f"{base}/p/*/")
    fork = Panel.objects.get(owner__username="bob")
    assert fork.forked_from == panel

    # Export bob's fork and import it again: an identical panel.
    exported = bob.request.get(f"{base}/p/{fork.slug}/recipe.json").text()
    bob.goto(f"{base}/panels/import/")
    bob.fill("#id_text", exported)
    bob.click("button:has-text('Import')")
    bob.wait_for_url(f"{base}/p/*/")
    imported = Panel.objects.filter(owner__username="bob").exclude(pk=fork.pk).get()
    assert recipes.to_recipe(imported) == json.loads(exported) == recipes.to_recipe(fork)
    Panel.objects.filter(pk=imported.pk).update(
        visibility="public", description="Qwen twice at two temperatures, plus SmolLM2."
    )
    bob.goto(f"{base}/panels/gallery/")
    assert "Three locals" in bob.content()
    bob.screenshot(path=str(ARTIFACTS / "panel-gallery.png"), full_page=True)
    alice_ctx.close()
    bob_ctx.close()
