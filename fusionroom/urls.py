from django.contrib import admin
from django.urls import include, path

from accounts import views as accounts
from chat.api import responses as api_responses
from chat.api import views as api

from . import health

urlpatterns = [
    path("", include("chat.urls")),
    path("", include("panels.urls")),
    path("", include("evals.urls")),
    path("accounts/", include("accounts.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("v1/chat/completions", api.chat_completions, name="api_chat_completions"),
    path("v1/models", api.models, name="api_models"),
    path("v1/responses", api_responses.create_response, name="api_responses"),
    path("v1/openapi.json", api.openapi, name="api_openapi"),
    path("v1/docs", api.docs, name="api_docs"),
    # Before the admin's own routes: its log-in page, answering 429 when throttled.
    path("admin/login/", accounts.admin_login),
    path("admin/", admin.site.urls),
]
