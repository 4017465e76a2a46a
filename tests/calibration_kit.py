"""An evaluation whose per-item results are written with the ORM, as the harness would
have left them: calibration reads only those rows, so no model needs to answer."""

from chat.models import Conversation, Message, Run
from evals import systems
from evals.models import Dataset, DatasetItem, Evaluation, Result, System
from panels.models import CatalogModel, Panel, Provider, Seat, solo_snapshot


def panel_of_two(owner, strategy="vote", tags=((), ())) -> Panel:
    """A panel of two seats on two catalog models nobody calls."""
    panel = Panel.objects.create(slug=f"measured-{owner.pk}", name="Measured", owner=owner)
    panel.strategy = strategy
    panel.save()
    for position, name in enumerate(["Small", "Large"]):
        provider = Provider.objects.create(name=f"Up {name}", base_url="http://127.0.0.1:9/v1")
        model = CatalogModel.objects.create(provider=provider, model_id=name, display_name=name)
        Seat.objects.create(panel=panel, position=position, model=model, tags=list(tags[position]))
    return panel


def evaluation_of(owner, panel: Panel, right: list[list[bool]], categories=None) -> Evaluation:
    """`right[s][i]`: whether seat s alone answered item i right; every seat answers
    every item. `categories[i]`: item i's category."""
    count = len(right[0])
    dataset = Dataset.objects.create(
        owner=owner, slug="sums", name="Sums", kind="short", item_count=count
    )
    items = [
        DatasetItem.objects.create(
            dataset=dataset,
            position=i,
            key=f"q{i}",
            category=(categories or [""] * count)[i],
            data={"question": f"{i} + 1?", "answers": [str(i + 1)]},
        )
        for i in range(count)
    ]
    evaluation = Evaluation.objects.create(
        owner=owner,
        dataset=dataset,
        name="Sums, both seats",
        item_ids=[item.pk for item in items],
        status=Evaluation.Status.DONE,
        total=count * len(right),
    )
    for position, spec in enumerate(systems.seats_alone(panel)):
        system = System.objects.create(
            evaluation=evaluation,
            position=position,
            label=spec.label,
            kind=spec.kind,
            config=spec.config,
        )
        for item, correct in zip(items, right[position], strict=True):
            Result.objects.create(
                evaluation=evaluation,
                system=system,
                item=item,
                status="graded",
                answer="x",
                correct=correct,
            )
    return evaluation


def evaluation_without_seats(owner, model: CatalogModel) -> Evaluation:
    dataset = Dataset.objects.create(owner=owner, slug="one", name="One", kind="short")
    evaluation = Evaluation.objects.create(
        owner=owner, dataset=dataset, name="A model alone", status=Evaluation.Status.DONE
    )
    System.objects.create(
        evaluation=evaluation,
        position=0,
        label="Model",
        kind="model",
        config=solo_snapshot(model),
    )
    return evaluation


def add_gate_runs(
    evaluation: Evaluation, panel: Panel, confidences: list[float], right: list[bool]
) -> None:
    """The panel under the gate, with the first seat's stated confidence on each item
    recorded in its run's decision, as the gate strategy records it."""
    spec = systems.with_strategy(panel, "gate")
    system = System.objects.create(
        evaluation=evaluation, position=9, label=spec.label, kind=spec.kind, config=spec.config
    )
    conversation = Conversation.objects.create(owner=evaluation.owner, hidden=True)
    items = DatasetItem.objects.filter(pk__in=evaluation.item_ids).order_by("position")
    for item, confidence, correct in zip(items, confidences, right, strict=True):
        message = Message.objects.create(conversation=conversation, content=item.key)
        decision = {"stage": "gate", "summary": "", "ms": 1, "detail": {"confidence": confidence}}
        run = Run.objects.create(message=message, config=spec.config, decisions=[decision])
        Result.objects.create(
            evaluation=evaluation,
            system=system,
            item=item,
            run=run,
            status="graded",
            answer="x",
            correct=correct,
        )
