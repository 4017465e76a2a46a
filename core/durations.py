"""Durations in the units a person reads: 850 ms, 32.9 s, 2 min 5 s, 1 h 4 min.

The one rule for every page (the `duration` template filter) and every export; the
conversation's script has its twin, formatDuration in static/js/format.js.
"""

import math


def _round(value: float) -> int:
    # Halves round up, as JavaScript's Math.round does: the page and the script agree.
    return math.floor(value + 0.5)


def human_duration(ms: float | None) -> str:
    """Milliseconds in words; "–" when unknown."""
    if ms is None:
        return "–"
    ms = max(0, _round(ms))
    if ms < 1000:
        return f"{ms} ms"
    tenths = _round(ms / 100)
    if tenths < 600:  # rounded first, so 59,960 ms reads "1 min", never "60.0 s"
        return f"{tenths / 10:.1f} s"
    seconds = _round(ms / 1000)
    if seconds < 3600:
        minutes, seconds = divmod(seconds, 60)
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(_round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
