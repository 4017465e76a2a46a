from django.conf import settings
from django.http import HttpRequest


def signup(request: HttpRequest) -> dict[str, bool]:
    """Whether pages offer "Sign up": not when sign-ups are closed."""
    return {"signup_open": settings.SIGNUP != "closed"}
