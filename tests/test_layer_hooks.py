"""The hooks through which a lower floor shows a higher app's data (pyproject.toml's
import contracts forbid the import): filled at start-up by the app above, and a
plain error naming that app when it was not."""

import pytest

from chat import models as chat_models
from evals.report import panel_evidence
from limits.spend import keys_with_spend
from panels import hooks


def test_evals_and_limits_fill_the_panels_hooks_at_start_up():
    assert hooks._evidence is panel_evidence
    assert hooks._key_spend is keys_with_spend


def test_an_unfilled_hook_names_the_app_that_fills_it(monkeypatch):
    monkeypatch.setattr(hooks, "_evidence", None)
    monkeypatch.setattr(hooks, "_key_spend", None)
    with pytest.raises(hooks.HookNotFilled, match="'evals' app fills it"):
        hooks.panel_evidence(None, None)
    with pytest.raises(hooks.HookNotFilled, match="'limits' app fills it"):
        hooks.keys_with_spend(None)


def test_the_chat_app_sets_the_answers_renderer_at_start_up():
    assert chat_models.render_answer("**Canberra**") == "<p><strong>Canberra</strong></p>\n"


def test_an_answer_saved_without_a_renderer_is_refused_in_words(monkeypatch):
    monkeypatch.setattr(chat_models, "_answer_renderer", None)
    with pytest.raises(chat_models.RendererMissing, match="ChatConfig.ready"):
        chat_models.Answer(text="**Canberra**").save()
