"""A model call's time limits: to connect, to the first token, between two pieces
of text, and in all. The site's defaults come from settings; a seat may set its own.

Its own module because both calls.py (which applies them) and cooldown.py (which
weighs whether a timeout under them was the upstream's fault) read them.
"""

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class CallLimits:
    connect_s: float
    first_token_s: float
    idle_s: float
    total_s: float

    @classmethod
    def from_settings(cls, **overrides: float | None) -> "CallLimits":
        values: dict[str, float] = {
            "connect_s": settings.CALL_CONNECT_TIMEOUT_S,
            "first_token_s": settings.CALL_FIRST_TOKEN_TIMEOUT_S,
            "idle_s": settings.CALL_IDLE_TIMEOUT_S,
            "total_s": settings.CALL_TOTAL_TIMEOUT_S,
        }
        values.update({k: float(v) for k, v in overrides.items() if v})
        return cls(**values)
