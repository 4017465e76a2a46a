from django.contrib import admin
from django.urls import include, path

from . import health

urlpatterns = [
    path("", include("chat.urls")),
    path("", include("panels.urls")),
    path("accounts/", include("fusionroom.accounts_urls")),
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
