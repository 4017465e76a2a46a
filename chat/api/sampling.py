"""A request's sampling fields, checked as OpenAI checks them: `stop` and `seed`
go to the call that writes the final answer (the synthesizer's, or a single
model's); `n` > 1 and log probabilities, which one written answer cannot give, are
refused with a 400 naming the field instead of being silently ignored."""

from .errors import BadRequest

MAX_STOP = 4  # as OpenAI
SEED_RANGE = (-(2**63), 2**63 - 1)  # OpenAI's: a 64-bit integer
ONE_ANSWER = "unsupported_parameter"  # OpenAI's code for a parameter a model does not take


def _integer(value, param: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"`{param}` must be an integer.", param, "invalid_type")
    return value


def _stop(value) -> tuple[str, ...]:
    """OpenAI's `stop`: a string, or a list of up to four strings."""
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise BadRequest("`stop` must be a string or a list of strings.", "stop", "invalid_type")
    if len(stops) > MAX_STOP:
        raise BadRequest(f"`stop` holds {len(stops)} sequences; at most {MAX_STOP}.", "stop")
    if any(not s for s in stops):
        raise BadRequest("`stop` sequences must not be empty strings.", "stop")
    return tuple(stops)


def read(data: dict) -> tuple[tuple[str, ...], int | None]:
    """`stop` and `seed`, which go to the call that writes the final answer; and the
    fields asking for what one final answer cannot give (several choices, token
    log probabilities), refused in words rather than silently ignored."""
    seed = _integer(data.get("seed"), "seed")
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise BadRequest("`seed` must fit in a 64-bit signed integer.", "seed")
    n = _integer(data.get("n"), "n")
    if n is not None and n < 1:
        raise BadRequest("`n` must be at least 1.", "n")
    if n is not None and n > 1:
        raise BadRequest(
            f"`n` is {n}, but only one choice per request is supported (n = 1): "
            "send the request again for another answer.",
            "n",
            ONE_ANSWER,
        )
    logprobs = data.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise BadRequest("`logprobs` must be true or false.", "logprobs", "invalid_type")
    if logprobs:
        raise BadRequest(
            "`logprobs` is not supported: the answer is written from several models' "
            "answers, so there are no token log probabilities to return. Leave it out.",
            "logprobs",
            ONE_ANSWER,
        )
    if _integer(data.get("top_logprobs"), "top_logprobs"):
        raise BadRequest(
            "`top_logprobs` is not supported (there are no token log probabilities "
            "to return). Leave it out.",
            "top_logprobs",
            ONE_ANSWER,
        )
    return _stop(data.get("stop")), seed
