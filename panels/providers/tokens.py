"""Token counts for servers that report no usage: an estimate, always marked as one."""

import math


def estimate_tokens(text: str) -> int:
    """Rough token count (~4 characters a token)."""
    return math.ceil(len(text) / 4) if text else 0
