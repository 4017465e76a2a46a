from django.conf import settings


class ContentSecurityPolicyMiddleware:
    """Sends settings.CONTENT_SECURITY_POLICY on every response that has none yet.

    Django 6 ships one; this project stays on Django 5.2 LTS for Python 3.11.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.header = "; ".join(
            f"{directive} {' '.join(sources)}"
            for directive, sources in settings.CONTENT_SECURITY_POLICY.items()
        )

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.header)
        return response
