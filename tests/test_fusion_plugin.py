"""OpenRouter Fusion's request shape read and resolved (chat/api/fusion_plugin.py),
and its response fields read from runs (chat/api/fusion_fields.py), against the
database: the ad-hoc panel each request builds, and each refusal's field."""

import json

import pytest

from chat.api import fusion_fields, fusion_plugin
from chat.api.errors import BadRequest
from chat.api.request import parse
from chat.models import Answer, Conversation, Message, Run
from panels.models import CatalogModel, Panel, Provider, Seat

pytestmark = pytest.mark.django_db


def body(**fields) -> bytes:
    return json.dumps(
        {"model": "openrouter/fusion", "messages": [{"role": "user", "content": "hi"}], **fields}
    ).encode()


def plugin(**fields) -> list[dict]:
    return [{"id": "fusion", **fields}]


def refused(**fields) -> BadRequest:
    with pytest.raises(BadRequest) as caught:
        parse(body(**fields))
    return caught.value


def test_the_plugins_shape_is_checked_and_each_refusal_names_its_field():
    cases = [
        ({"plugins": plugin(analysis_models=[])}, "plugins[0].analysis_models", "1 to 8"),
        (
            {"plugins": plugin(analysis_models=[f"m{i}" for i in range(9)])},
            "plugins[0].analysis_models",
            "it has 9",
        ),
        ({"plugins": plugin(analysis_models=["a", ""])}, "plugins[0].analysis_models[1]", "id"),
        ({"plugins": [{"id": "web"}]}, "plugins[0].id", "only the `fusion` plugin"),
        ({"plugins": plugin() + plugin()}, "plugins[1]", "twice"),
        ({"plugins": plugin(temperature=3)}, "plugins[0].temperature", "from 0 to 2"),
        ({"plugins": plugin(max_tool_calls=17)}, "plugins[0].max_tool_calls", "1 to 16"),
        ({"plugins": plugin(max_tool_calls=0)}, "plugins[0].max_tool_calls", "1 to 16"),
        ({"plugins": plugin(reasoning={"effort": "high"})}, "plugins[0].reasoning", "Remove"),
        ({"plugins": plugin(colour="red")}, "plugins[0].colour", "not a field"),
        ({"plugins": {"id": "fusion"}}, "plugins", "a list"),
        (
            {"plugins": plugin(), "fusion": {"panel": {"schema": 2}}},
            "fusion.panel",
            "not both",
        ),
        ({"fusion": {"panel": {"schema": 2, "name": "x"}}}, "fusion.panel.seats", "at least"),
        (
            {"fusion": {"panel": {"schema": 2, "name": "x", "seats": [{"model": "m"}]}}},
            "fusion.panel.seats[1].model",
            '{"provider"',
        ),
    ]
    for fields, param, words in cases:
        bad = refused(**fields)
        assert (bad.param, words in bad.message) == (param, True), (fields, bad.message)


def test_a_plugin_reads_into_its_settings():
    request = parse(
        body(
            plugins=plugin(
                analysis_models=[" a/b ", "c"], model="j", max_tool_calls=3, temperature=0.7
            )
        )
    )
    assert request.adhoc == fusion_plugin.FusionPlugin(
        where="plugins[0]",
        analysis_models=("a/b", "c"),
        judge="j",
        max_tool_calls=3,
        temperature=0.7,
    )
    assert parse(body()).adhoc is None


@pytest.fixture
def catalog(alice, bob, settings):
    """Site models a, b and j; bob's own provider serving `secret`; a default panel
    with web tools, a 90 s deadline and `j` as its judge."""
    site = Provider.objects.create(name="Site", base_url="https://site.example/v1")
    models = {
        name: CatalogModel.objects.create(provider=site, model_id=name, display_name=name.upper())
        for name in ("a", "openai/b", "j")
    }
    bobs = Provider.objects.create(name="Bobs", owner=bob, base_url="https://bob.example/v1")
    models["secret"] = CatalogModel.objects.create(
        provider=bobs, model_id="secret", display_name="Secret"
    )
    base = Panel.objects.create(
        slug="base-panel",
        name="Base",
        judge=models["j"],
        deadline_s=90,
        tools=["web_search"],
        visibility="public",
    )
    Seat.objects.create(panel=base, position=0, model=models["a"], temperature=0.1)
    settings.API_DEFAULT_PANEL = base.slug
    return models


def resolve(user, model="openrouter/fusion", **fields):
    request = parse(body(model=model, **fields))
    return fusion_plugin.answerer(request.model, request.adhoc, user)


def test_the_plugin_builds_an_ad_hoc_panel_from_the_callers_models(alice, catalog):
    config = resolve(
        alice,
        plugins=plugin(
            analysis_models=["a", "site/openai/b", "openai/b"],
            model="j",
            temperature=0.9,
            max_tool_calls=2,
        ),
    )
    assert config["panel"] is None  # nothing saved, nothing to link to
    assert [s["model"]["catalog_id"] for s in config["seats"]] == [
        catalog["a"].pk,
        catalog["openai/b"].pk,
        catalog["openai/b"].pk,
    ]
    assert {(s["temperature"], s["max_tool_calls"]) for s in config["seats"]} == {(0.9, 2)}
    assert config["judge"]["catalog_id"] == config["synthesizer"]["catalog_id"] == catalog["j"].pk
    assert config["strategy"] == {"name": "fusion"}
    assert (config["tools"], config["deadline_s"]) == (["web_search"], 90)
    assert not Panel.objects.exclude(slug="base-panel").filter(name="Fusion plugin").exists()


def test_the_judge_is_the_plugins_model_else_the_outer_model_else_the_default_panels(
    alice, catalog
):
    def judge(**options) -> int:
        return resolve(alice, **options)["judge"]["catalog_id"]

    fields = {"analysis_models": ["a"]}
    assert judge(plugins=plugin(**fields, model="openai/b")) == catalog["openai/b"].pk
    assert judge(model="a", plugins=plugin(**fields)) == catalog["a"].pk
    assert judge(plugins=plugin(**fields)) == catalog["j"].pk
    # No analysis_models: the default panel's seats, with the plugin's settings.
    seats = resolve(alice, plugins=plugin(temperature=1.5))["seats"]
    assert [(s["model"]["catalog_id"], s["temperature"]) for s in seats] == [(catalog["a"].pk, 1.5)]


def test_models_the_caller_may_not_use_are_refused_by_position(alice, bob, catalog):
    with pytest.raises(BadRequest) as caught:
        resolve(alice, plugins=plugin(analysis_models=["a", "j", "secret"]))
    assert caught.value.param == "plugins[0].analysis_models[2]"
    assert "`secret` is not a model you can use here" in caught.value.message
    with pytest.raises(BadRequest) as caught:
        resolve(alice, plugins=plugin(analysis_models=["a"], model="nope"))
    assert caught.value.param == "plugins[0].model"
    with pytest.raises(fusion_plugin.ModelNotFound) as missing:
        resolve(alice, model="nope", plugins=plugin(analysis_models=["a"]))
    assert missing.value.response().status_code == 404
    # Bob may use his own model, and by its provider's name too.
    config = resolve(bob, plugins=plugin(analysis_models=["secret", "bobs/secret"]))
    assert [s["model"]["catalog_id"] for s in config["seats"]] == [catalog["secret"].pk] * 2


def test_plugin_ids_are_the_ids_the_models_list_gives(bob, catalog):
    """One naming everywhere (chat/api/catalog_ids.py): a model id two providers
    serve is the older provider's; the other is reached by its qualified id."""
    bobs = Provider.objects.get(name="Bobs")
    own = CatalogModel.objects.create(provider=bobs, model_id="a", display_name="My a")
    assert fusion_plugin.find_model("a", bob) == catalog["a"]
    assert fusion_plugin.find_model("bobs/a", bob) == own
    assert fusion_plugin.find_model("site/a", bob) == catalog["a"]


def test_the_alias_is_the_default_panel_and_other_models_are_left_alone(alice, catalog):
    assert resolve(alice) == Panel.objects.get(slug="base-panel")
    assert resolve(alice, model="fusion") is None  # the usual resolution knows `fusion`
    assert resolve(alice, model="a") is None


def test_an_inline_recipe_is_an_ad_hoc_panel(alice, catalog):
    recipe = {
        "schema": 2,
        "name": "Mine",
        "seats": [{"model": {"provider": "Site", "model": "a"}, "temperature": 0.3}],
        "judge": {"provider": "Site", "model": "j"},
    }
    config = resolve(alice, model="fusion", fusion={"panel": recipe})
    assert config["panel"] is None
    assert [(s["model"]["catalog_id"], s["temperature"]) for s in config["seats"]] == [
        (catalog["a"].pk, 0.3)
    ]
    assert config["judge"]["catalog_id"] == catalog["j"].pk
    recipe["seats"][0]["model"] = {"provider": "Bobs", "model": "secret"}
    with pytest.raises(BadRequest) as caught:
        resolve(alice, model="fusion", fusion={"panel": recipe})
    assert caught.value.param == "fusion.panel" and "Bobs / secret" in caught.value.message
    with pytest.raises(BadRequest) as caught:
        resolve(alice, model="fusion/base-panel", fusion={"panel": recipe})
    assert caught.value.param == "model"


# --- the response fields -----------------------------------------------------------------


def run_with(alice, seats: list[dict], **run_fields) -> Run:
    conversation = Conversation.objects.create(owner=alice)
    message = Message.objects.create(conversation=conversation, content="q")
    config = {"seats": [{}] * len(seats), "judge": {"model_id": "j"}}
    run = Run.objects.create(message=message, config=config, **run_fields)
    for position, seat in enumerate(seats):
        Answer.objects.create(run=run, position=position, model_name=seat["model_key"], **seat)
    return run


def test_the_analysis_names_models_where_our_judge_named_labels(alice):
    run = run_with(
        alice,
        [
            {"model_key": "a", "status": "done", "text": "Canberra"},
            {
                "model_key": "b",
                "status": "failed",
                "error": "Up b: server error 500",
                "attempts": [{"error": {"status": 500}}],
            },
            {"model_key": "c", "status": "done", "text": "Sydney"},
        ],
        status="done",
        analysis_structured=True,
    )
    a, _, c = run.answers.order_by("position")
    run.analysis = {
        "consensus": ["a city"],
        "contradictions": [
            {"point": "which", "positions": {"A": "Sydney", "B": "Canberra"}, "verdict": "B"}
        ],
        "partial_coverage": [{"point": "the ACT", "labels": ["A", "B"]}],
        "unique_insights": [{"label": "B", "insight": "1913"}],
        "blind_spots": ["the ACT"],
        "errors": [],
        "scores": [],
        "labels": {"A": c.pk, "B": a.pk},
    }
    run.save()
    fields = fusion_fields.fields(run)
    assert fields["analysis"] == {
        "consensus": ["a city"],
        "contradictions": [
            {
                "topic": "which",
                "stances": [
                    {"model": "c", "stance": "Sydney"},
                    {"model": "a", "stance": "Canberra"},
                ],
                "verdict": "B",
            }
        ],
        "partial_coverage": [{"point": "the ACT", "models": ["c", "a"]}],
        "unique_insights": [{"model": "a", "insight": "1913"}],
        "blind_spots": ["the ACT"],
    }
    assert fields["responses"] == [
        {"model": "a", "content": "Canberra"},
        {"model": "c", "content": "Sydney"},
    ]
    assert fields["failed_models"] == [
        {"model": "b", "error": "Up b: server error 500", "status_code": 500}
    ]
    assert fields["failure_reason"] is None


@pytest.mark.parametrize(
    ("run_fields", "seat_kinds", "expected"),
    [
        (
            {"status": "failed", "failure_reason": "all_seats_failed"},
            ["server_error", "rate_limited"],
            "all_panels_failed",
        ),
        (
            {"status": "failed", "failure_reason": "all_seats_failed"},
            ["rate_limited"] * 2,
            "rate_limited",
        ),
        (
            {"status": "failed", "failure_reason": "budget_exceeded"},
            ["", ""],
            "insufficient_credits",
        ),
        (
            {"status": "done", "failure_reason": "judge_upstream_error"},
            ["", ""],
            "judge_upstream_error",
        ),
        (
            {"status": "done", "failure_reason": "judge_empty_completion"},
            ["", ""],
            "judge_empty_completion",
        ),
        ({"status": "done", "failure_reason": "judge_runaway"}, ["", ""], "judge_runaway"),
        ({"status": "done", "analysis_raw": "Both are fine."}, ["", ""], "judge_not_valid_json"),
        ({"status": "done", "analysis_raw": '{"verdict": "A"}'}, ["", ""], "judge_schema_mismatch"),
        ({"status": "failed", "failure_reason": "synthesis_failed"}, ["", ""], None),
        ({"status": "done"}, ["", ""], None),
    ],
)
def test_failure_reasons_in_the_hosted_services_words(alice, run_fields, seat_kinds, expected):
    failed = run_fields.get("failure_reason") == "all_seats_failed"
    seats = [
        {"model_key": f"m{i}", "status": "failed" if failed else "done", "error_kind": kind}
        for i, kind in enumerate(seat_kinds)
    ]
    run = run_with(alice, seats, **run_fields)
    fields = fusion_fields.fields(run)
    assert fields["failure_reason"] == expected
    assert fields["analysis"] is None


def test_a_model_alone_gets_none_of_these_fields(alice):
    run = run_with(alice, [{"model_key": "a", "status": "done"}], status="done")
    run.config = {"seats": [{}], "judge": None}
    run.save()
    assert fusion_fields.fields(run) == {}


def test_an_ad_hoc_panels_conversation_goes_on_with_the_same_panel(alice, catalog):
    """The conversation an ad-hoc panel answered in the API is in the owner's history;
    a later turn there (the conversation, or the API's history) keeps that panel."""
    from chat.engine.runs import start_conversation, start_run

    config = resolve(alice, plugins=plugin(analysis_models=["a", "openai/b"], model="j"))
    first = start_conversation(alice, config, "Which is larger, 9.11 or 9.9?", via="api")
    conversation = first.conversation
    assert conversation.answered_by == "Ad-hoc panel (2 seats)"
    Run.objects.update(status=Run.Status.DONE)
    later = start_run(conversation, "And 9.2?")
    assert later.run.config["seats"] == first.run.config["seats"]
    assert later.run.config["judge"] == first.run.config["judge"]
    assert later.run.status == Run.Status.QUEUED


def test_the_alias_mode_is_the_requests_header_else_the_sites_setting(settings):
    from chat.api import server_tools

    settings.API_FUSION_ALIAS = "tool"
    assert server_tools.alias_mode(None) == server_tools.alias_mode("  ") == "tool"
    assert server_tools.alias_mode(" Panel ") == "panel"
    settings.API_FUSION_ALIAS = "panel"
    assert server_tools.alias_mode(None) == "panel" and server_tools.alias_mode("tool") == "tool"
    with pytest.raises(BadRequest) as bad:
        server_tools.alias_mode("hosted")
    assert bad.value.param == "X-Fusion-Alias" and "'hosted'" in bad.value.message


def test_the_alias_model_is_the_sites_setting_else_the_default_panels_judge(
    alice, catalog, settings
):
    assert fusion_plugin.alias_model(alice) == catalog["j"]
    settings.API_FUSION_ALIAS_MODEL = "site/openai/b"
    assert fusion_plugin.alias_model(alice) == catalog["openai/b"]
    settings.API_FUSION_ALIAS_MODEL = "secret"  # bob's own provider's: not alice's to use
    with pytest.raises(BadRequest) as bad:
        fusion_plugin.alias_model(alice)
    assert bad.value.param == "model" and "API_FUSION_ALIAS_MODEL" in bad.value.message


def test_an_mcp_panel_lends_what_the_arguments_leave_out(alice, catalog):
    """MCP's `fusion` with `model` alone: the named panel's seats, tools and deadline,
    the named analyst; with `analysis_models` too, those seats."""
    judged = fusion_plugin.plugin_fields({"model": "a"}, "arguments")
    config = fusion_plugin.panel_for_mcp(judged, "base-panel", alice)
    assert [s["model"]["catalog_id"] for s in config["seats"]] == [catalog["a"].pk]
    assert config["judge"]["catalog_id"] == catalog["a"].pk
    assert (config["tools"], config["deadline_s"]) == (["web_search"], 90)
    seated = fusion_plugin.plugin_fields({"analysis_models": ["j", "j"]}, "arguments")
    config = fusion_plugin.panel_for_mcp(seated, None, alice)  # the default panel lends
    assert [s["model"]["catalog_id"] for s in config["seats"]] == [catalog["j"].pk] * 2
    assert config["judge"]["catalog_id"] == catalog["j"].pk
