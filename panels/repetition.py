"""Spotting a model that repeats itself, so its call can be cut off early.

Small models under a JSON grammar (and sometimes without one) fall into a loop and
repeat one phrase until their max_tokens runs out: minutes of decoding for
nothing. A loop is text whose tail is periodic: the last `period` characters equal
the `period` before them, again and again. Legitimate text rarely repeats one unit
verbatim for hundreds of characters, so the bar is high: at least MIN_REPEATS
copies covering at least MIN_SPAN characters.
"""

MAX_PERIOD = 200  # the longest repeated unit looked for, in characters
MIN_REPEATS = 6
MIN_SPAN = 400
CHECK_EVERY = 64  # characters of new text between two looks


def repeated_unit(text: str) -> str | None:
    """The unit that the end of `text` repeats, if it is a loop; else None."""
    if len(text) < MIN_SPAN:
        return None
    for period in range(1, MAX_PERIOD + 1):
        unit = text[-period:]
        if text[-2 * period : -period] != unit:
            continue
        copies = 2
        while copies * period < MIN_SPAN + period and text.endswith(unit * (copies + 1)):
            copies += 1
        if copies >= MIN_REPEATS and copies * period >= MIN_SPAN:
            return unit
    return None


class LoopWatch:
    """Fed the stream's text as it comes; says when it has become a loop."""

    def __init__(self) -> None:
        self._text = ""
        self._unchecked = 0

    def feed(self, text: str) -> str | None:
        # Only the tail matters: keep enough of it for the longest loop.
        self._text = (self._text + text)[-(MIN_SPAN + 2 * MAX_PERIOD) :]
        self._unchecked += len(text)
        if self._unchecked < CHECK_EVERY:
            return None
        self._unchecked = 0
        return repeated_unit(self._text)
