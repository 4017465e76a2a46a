"""How many panels, providers and datasets one user may keep (panels/quotas.py): each
door that makes one — the builder, a recipe import, a fork, the providers page, a
dataset upload, the eval command — refuses in words past the count, and keeps nothing."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import CommandError
from django.urls import reverse

from evals import datasets
from evals.management.commands.fusion_eval import Command as FusionEval
from evals.models import Dataset
from panels.models import CatalogModel, Panel, Provider
from tests.test_panels import builder_post

pytestmark = pytest.mark.django_db


@pytest.fixture
def models(smollm2):
    return smollm2, CatalogModel.objects.get(model_id="qwen2.5-coder-0.5b")


@pytest.fixture
def one_panel_each(settings, client, alice, models):
    settings.MAX_PANELS_PER_USER = 1
    client.force_login(alice)
    assert client.post(reverse("panels:new"), builder_post(models)).status_code == 302
    return Panel.objects.get(owner=alice)


def test_the_builder_refuses_a_panel_past_the_count(client, alice, models, one_panel_each):
    response = client.post(reverse("panels:new"), builder_post(models, name="Second"))
    assert response.status_code == 400
    assert "You have 1 panels, the most allowed (1). Delete a panel" in response.content.decode()
    assert Panel.objects.filter(owner=alice).count() == 1
    # Editing the one kept is not a new panel.
    edited = client.post(
        reverse("panels:edit", args=[one_panel_each.slug]), builder_post(models, name="Renamed")
    )
    assert edited.status_code == 302


def test_a_recipe_import_and_a_fork_are_refused_past_the_count(client, alice, one_panel_each):
    exported = client.get(reverse("panels:export", args=[one_panel_each.slug])).content
    response = client.post(reverse("panels:import"), {"text": exported.decode()})
    assert response.status_code == 400
    assert "the most allowed (1)" in response.content.decode()
    forked = client.post(reverse("panels:fork", args=[one_panel_each.slug]), follow=True)
    assert "It was not copied: You have 1 panels" in forked.content.decode()
    assert Panel.objects.filter(owner=alice).count() == 1


def test_the_providers_page_refuses_a_provider_past_the_count(settings, client, alice):
    settings.MAX_PROVIDERS_PER_USER = 1
    client.force_login(alice)
    data = {"kind": "openai", "base_url": "https://93.184.216.34/v1", "api_key": "sk-x-4321"}
    assert client.post(reverse("panels:api_keys"), data | {"name": "One"}).status_code == 302
    response = client.post(reverse("panels:api_keys"), data | {"name": "Two"})
    assert response.status_code == 400
    assert "You have 1 providers, the most allowed (1)" in response.content.decode()
    assert Provider.objects.filter(owner=alice).count() == 1


GOOD = json.dumps({"id": 1, "question": "1 + 1?", "answers": ["2"]})


def test_a_dataset_upload_is_refused_past_the_count(settings, client, alice, tmp_path):
    settings.MAX_DATASETS_PER_USER = 1
    client.force_login(alice)
    for name in ("One", "Two"):
        upload = SimpleUploadedFile("sums.jsonl", GOOD.encode())
        response = client.post(reverse("evals:upload"), {"name": name, "file": upload})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Nothing was imported: You have 1 datasets, the most allowed (1)" in page
    assert Dataset.objects.filter(owner=alice).count() == 1
    # The eval command's path meets the same count, as a command error.
    path = tmp_path / "more.jsonl"
    path.write_text(GOOD)
    with pytest.raises(CommandError, match="the most allowed"):
        FusionEval()._dataset(alice, str(path))
    # A site dataset (no owner) has no count.
    datasets.save(None, "Site", "short", datasets.parse([GOOD.encode()], None)[1], "test")
