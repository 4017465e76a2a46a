from django import template
from django.utils.safestring import mark_safe

from chat import markdown

register = template.Library()


@register.filter
def render_markdown(text: str) -> str:
    # markdown.render sanitises with nh3; marking it safe is what it is for.
    return mark_safe(markdown.render(text or ""))  # noqa: S308


@register.filter
def ms_as_seconds(ms: int | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.1f} s"
