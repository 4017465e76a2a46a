"""Schemathesis against the live API: generated requests, valid and not, never
cause a server error, and every status is one the OpenAPI document lists."""

import os

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from hypothesis import HealthCheck, Phase, given, settings

from chat.api.keys import create_key
from chat.api.openapi import SPEC

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]
schema = schemathesis.openapi.from_dict(SPEC)


def test_the_openapi_document_is_served(live_stack):
    import httpx

    served = httpx.get(f"{live_stack.url}/v1/openapi.json").json()
    assert served == SPEC
    assert httpx.get(f"{live_stack.url}/v1/docs").status_code == 200


@pytest.mark.parametrize("operation_id", ["createChatCompletion", "listModels", "createResponse"])
def test_generated_requests_cause_no_server_error(live_stack, operation_id):
    user = get_user_model().objects.create_user(f"fuzz-{operation_id}")
    key = create_key(user, "schemathesis")[1]
    operation = next(
        result.ok()
        for result in schema.get_all_operations()
        if result.ok().definition.raw.get("operationId") == operation_id
    )
    documented = {int(code) for code in operation.definition.raw["responses"]}
    seen = set()

    @settings(
        max_examples=30,
        derandomize=bool(os.environ.get("CI")),  # a clean clone is never failed by chance
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy())
    def check(case):
        response = case.call(
            base_url=live_stack.url, timeout=120, headers={"Authorization": f"Bearer {key}"}
        )
        seen.add(response.status_code)
        assert response.status_code != 500, response.text[:500]
        assert response.status_code in documented, (response.status_code, response.text[:300])

    check()
    assert seen  # requests were really made
