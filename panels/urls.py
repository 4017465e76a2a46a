from django.urls import path

from . import views

app_name = "panels"
urlpatterns = [
    path("panels/", views.panel_list, name="list"),
    path("keys/", views.api_keys, name="api_keys"),
]
