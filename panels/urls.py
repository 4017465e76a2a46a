from django.urls import path

from . import views

app_name = "panels"
urlpatterns = [
    path("panels/", views.panel_list, name="list"),
    path("keys/", views.api_keys, name="api_keys"),
    path("keys/providers/<int:pk>/", views.provider_edit, name="provider_edit"),
    path("keys/providers/<int:pk>/delete/", views.provider_delete, name="provider_delete"),
    path("keys/providers/<int:pk>/test/", views.provider_test, name="provider_test"),
]
