"""Filters every template has without `{% load %}` (TEMPLATES' `builtins` in settings):
the site's few formatting rules that are not any one app's."""

from django import template

from core.durations import human_duration

register = template.Library()


@register.filter
def duration(ms: float | None) -> str:
    """Milliseconds in human units: `{{ answer.latency_ms|duration }}` → "32.9 s"."""
    return human_duration(ms)
