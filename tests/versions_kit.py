"""Turns written through the ORM as a worker would leave them, for the tests of
versions (edit, regenerate, the arrows) and of exports."""

from chat.models import Answer, Conversation, Message, Run

SEATS = ("Seat Alpha", "Seat Beta")


def finished_turn(
    conversation: Conversation, question: str, parent: Message | None, answer: str
) -> Message:
    """A done fusion turn: two seats, a judge with an analysis, a synthesis, a decision
    and a cost. It becomes the end of the conversation's current branch."""
    message = Message.objects.create(conversation=conversation, content=question, parent=parent)
    run = Run.objects.create(
        message=message,
        status=Run.Status.DONE,
        config={"judge": {"model_id": "judge"}},
        analysis={"consensus": [f"agreed on {answer}"], "contradictions": []},
        analysis_structured=True,
        decisions=[{"stage": "vote", "summary": f"Vote 2–0 for {answer}", "ms": 5, "detail": {}}],
        cost_usd="0.00120000",
        stage_ms={"total": 900},
    )
    for position, name in enumerate(SEATS):
        Answer.objects.create(
            run=run,
            position=position,
            model_name=name,
            status="done",
            text=f"{name} says {answer}",
            cost_usd="0.00050000",
        )
    Answer.objects.create(run=run, role="judge", position=2, status="done", text="{}")
    Answer.objects.create(
        run=run, role="synthesizer", position=3, model_name="Synth", status="done", text=answer
    )
    conversation.current_leaf = message
    conversation.save(update_fields=["current_leaf"])
    return message


def finish_queued(message: Message, answer: str) -> None:
    """Close a queued solo run as done with `answer`, as the worker would."""
    run = message.run
    run.answers.update(status="done", text=answer)
    run.status = Run.Status.DONE
    run.save(update_fields=["status"])
