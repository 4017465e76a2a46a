from django import template
from django.utils.safestring import mark_safe

from chat.models import Answer

register = template.Library()


@register.filter
def answer_html(answer: Answer) -> str:
    # Rendered and sanitised (nh3) once, when the answer was saved: a page view never
    # renders Markdown. Marking it safe is what the sanitising is for.
    return mark_safe(answer.body_html)  # noqa: S308


@register.filter
def ms_as_seconds(ms: int | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.1f} s"
