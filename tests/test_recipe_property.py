"""Property: any valid recipe survives import then export unchanged."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from panels import recipes, versions

MODELS = [
    {"provider": "Local · Qwen2.5-Coder 0.5B Instruct", "model": "qwen2.5-coder-0.5b"},
    {"provider": "Local · SmolLM2 135M Instruct", "model": "smollm2-135m"},
]
model = st.sampled_from(MODELS)
# Any text a database can keep; NUL and lone surrogates are refused at import
# (tests/test_unstorable_text.py), so they are not part of a *valid* recipe.
storable = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))
maybe = st.none() | st.integers(1, 3600).map(float)
seat = st.fixed_dictionaries(
    {
        "model": model,
        "fallbacks": st.lists(model, max_size=2),
        "system_prompt": st.text(storable, max_size=40),
        "temperature": st.none() | st.sampled_from([0.0, 0.3, 0.7, 1.0, 2.0]),
        "max_tokens": st.none() | st.integers(16, 32768),
        "timeouts": st.fixed_dictionaries(
            {"first_token_s": maybe, "idle_s": maybe, "total_s": maybe}
        ),
    }
)


@st.composite
def recipe(draw):
    seats = draw(st.lists(seat, min_size=1, max_size=8))
    return {
        "schema": 1,
        "name": draw(
            st.text(storable, min_size=1, max_size=80).filter(lambda s: s.strip() == s and s)
        ),
        "description": draw(st.text(storable, max_size=60)),
        "seats": seats,
        "judge": draw(model),
        "synthesizer": draw(st.none() | model),
        "synthesizer_fallback": draw(st.none() | model),
        "judge_drafts": draw(st.booleans()),
        "min_answers": draw(st.none() | st.integers(1, len(seats))),
        "deadline_s": draw(st.integers(1, 3600).map(float)),
    }


@pytest.mark.django_db
# Random on every run; a failure prints the example and a @reproduce_failure blob.
@settings(
    max_examples=40,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=recipe())
def test_import_then_export_is_identical(data, smollm2, alice):
    imported = recipes.resolve(recipes.parse(json.dumps(data)), alice)
    assert imported.missing == []
    panel = recipes.save_as_panel(imported, alice, versions.new_slug("p"))
    assert recipes.to_recipe(panel) == data
    panel.delete()
