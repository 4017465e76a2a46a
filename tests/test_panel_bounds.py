"""One set of bounds on a panel's numbers: the builder, recipe import and the API
refuse the same values, each naming the field and the range (panels/bounds.py).
That the builder and recipes agree on every value is tests/test_recipe_property.py."""

import json
import re

import pytest
from django.urls import reverse

from chat.api.keys import create_key
from panels import recipes
from panels.models import CatalogModel, Panel
from tests.test_panels import builder_post

pytestmark = pytest.mark.usefixtures("redis_ready")


@pytest.fixture
def models(smollm2):
    return smollm2, CatalogModel.objects.get(model_id="qwen2.5-coder-0.5b")


def seat_errors(response) -> list[dict]:
    return [form.errors for form in response.context["seats"].forms]


def test_the_builder_refuses_seat_numbers_out_of_range_naming_field_and_range(
    client, alice, models
):
    client.force_login(alice)
    data = builder_post(
        models,
        **{
            "seats-0-first_token_timeout_s": "0.001",
            "seats-1-max_tokens": "2000000000",
            "seats-2-total_timeout_s": "1e9",
        },
    )
    response = client.post(reverse("panels:new"), data)
    assert response.status_code == 400
    errors = seat_errors(response)
    assert errors[0]["first_token_timeout_s"] == [
        "First-token time limit (s) must be a number from 2 to 3,600."
    ]
    assert errors[1]["max_tokens"] == ["Max tokens must be a whole number from 16 to 32,768."]
    assert errors[2]["total_timeout_s"] == [
        "Total time limit (s) must be a number from 2 to 3,600."
    ]
    assert "Total time limit (s) must be a number from 2 to 3,600." in response.content.decode()
    assert not Panel.objects.filter(owner=alice).exists()


def test_the_builder_input_carries_the_range(client, alice, models):
    client.force_login(alice)
    page = client.get(reverse("panels:new")).content.decode()
    tag = re.search(r'<input[^>]*name="seats-0-max_tokens"[^>]*>', page).group()
    assert 'min="16"' in tag and 'max="32768"' in tag


def test_the_maximum_of_max_tokens_is_the_sites(client, alice, models, settings):
    settings.MAX_OUTPUT_TOKENS = 4096
    client.force_login(alice)
    over = builder_post(models, **{"seats-0-max_tokens": "4097"})
    response = client.post(reverse("panels:new"), over)
    assert seat_errors(response)[0]["max_tokens"] == [
        "Max tokens must be a whole number from 16 to 4,096."
    ]
    recipe = {"schema": 2, "name": "R", "judge": MODEL, "seats": [{"model": MODEL}]}
    recipe["seats"][0]["max_tokens"] = 4097
    with pytest.raises(recipes.RecipeError) as refused:
        recipes.parse(json.dumps(recipe))
    assert refused.value.where == "seats[1].max_tokens"
    assert str(refused.value) == (
        "seats[1].max_tokens: must be a whole number from 16 to 4,096 or null"
    )
    within = builder_post(models, **{"seats-0-max_tokens": "4096"})
    assert client.post(reverse("panels:new"), within).status_code == 302


def test_the_builder_refuses_a_quorum_larger_than_its_seats(client, alice, models):
    client.force_login(alice)
    response = client.post(reverse("panels:new"), builder_post(models, min_answers="4"))
    assert response.status_code == 400
    assert response.context["form"].errors["min_answers"] == [
        "Quorum (answers) must be a whole number from 1 to 3."
    ]
    three = builder_post(models, min_answers="3")
    assert client.post(reverse("panels:new"), three).status_code == 302


MODEL = {"provider": "Local · SmolLM2 135M Instruct", "model": "smollm2-135m"}


@pytest.mark.parametrize(
    ("seat", "where", "message"),
    [
        (
            {"timeouts": {"first_token_s": 0.001}},
            "seats[1].timeouts.first_token_s",
            "must be a number from 2 to 3,600 or null",
        ),
        (
            {"timeouts": {"total_s": 1e9}},
            "seats[1].timeouts.total_s",
            "must be a number from 2 to 3,600 or null",
        ),
        (
            {"max_tokens": 2_000_000_000},
            "seats[1].max_tokens",
            "must be a whole number from 16 to 32,768 or null",
        ),
        ({"weight": 101}, "seats[1].weight", "must be a number from 0 to 100"),
        ({"max_tool_calls": 0}, "seats[1].max_tool_calls", "must be a whole number from 1 to 16"),
    ],
)
def test_recipe_import_refuses_the_same_values(seat, where, message):
    recipe = {"schema": 2, "name": "R", "judge": MODEL, "seats": [{"model": MODEL, **seat}]}
    with pytest.raises(recipes.RecipeError) as refused:
        recipes.parse(json.dumps(recipe))
    assert refused.value.where == where
    assert str(refused.value) == f"{where}: {message}"


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (
            {"max_tokens": 2_000_000_000},
            "max_tokens",
            "`max_tokens` must be a whole number from 16 to 32,768.",
        ),
        (
            {"max_completion_tokens": 8},
            "max_completion_tokens",
            "`max_completion_tokens` must be a whole number from 16 to 32,768.",
        ),
        ({"temperature": 2.5}, "temperature", "`temperature` must be a number from 0 to 2."),
    ],
)
@pytest.mark.django_db(transaction=True)  # the view reads the key from its own thread
def test_the_api_refuses_the_same_values_with_a_400(client, alice, body, param, message):
    _, key = create_key(alice, "bounds")
    request = {"model": "fusion", "messages": [{"role": "user", "content": "hi"}], **body}
    response = client.post(
        "/v1/chat/completions",
        json.dumps(request),
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert response.json()["error"]["message"] == message


def test_the_api_schema_states_the_same_range():
    from chat.api.openapi_requests import REQUEST

    schema = REQUEST["properties"]["max_tokens"]
    assert (schema["minimum"], schema["maximum"]) == (16, 32768)
