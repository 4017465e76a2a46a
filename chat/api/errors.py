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
    **extra,
) -> JsonResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}, **extra}
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message, self.param = message, param

    def response(self) -> JsonResponse:
        return error(400, self.message, param=self.param)
