from django.conf import settings


def signup(request) -> dict:
    """Whether pages offer "Sign up": not when sign-ups are closed."""
    return {"signup_open": settings.SIGNUP != "closed"}
