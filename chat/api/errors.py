"""Errors in OpenAI's format: {"error": {"message", "type", "param", "code"}}."""

from django.http import JsonResponse


def error(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict | None = None,
    more: dict | None = None,
    **extra,
) -> JsonResponse:
    """`more` adds fields to the error object; `extra`, beside it."""
    failure = {"message": message, "type": type, "param": param, "code": code, **(more or {})}
    body = {"error": failure, **extra}
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code

    def response(self) -> JsonResponse:
        return error(400, self.message, param=self.param, code=self.code)


# A refused run's code, as OpenAI's error types name it.
_LIMIT_TYPES = {402: "insufficient_quota", 429: "rate_limit_error", 413: "invalid_request_error"}


def limit_error(refused) -> JsonResponse:
    """A run refused by the user's limits (chat.engine.admission.LimitReached), with its
    numbers: `error.limit` holds the budget, what is spent and when it renews."""
    headers = {"Retry-After": str(refused.retry_after)} if refused.retry_after else None
    return error(
        refused.status,
        refused.message,
        type=_LIMIT_TYPES.get(refused.status, "invalid_request_error"),
        code=refused.code,
        headers=headers,
        more={"limit": refused.numbers} if refused.numbers else None,
    )
