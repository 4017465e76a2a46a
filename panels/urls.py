from django.urls import path

from . import panel_views, provider_views

app_name = "panels"
urlpatterns = [
    path("panels/", panel_views.panel_list, name="list"),
    path("panels/gallery/", panel_views.gallery, name="gallery"),
    path("panels/new/", panel_views.edit, name="new"),
    path("panels/import/", panel_views.import_recipe, name="import"),
    path("p/<slug:slug>/", panel_views.detail, name="detail"),
    path("p/<slug:slug>/edit/", panel_views.edit, name="edit"),
    path("p/<slug:slug>/fork/", panel_views.fork, name="fork"),
    path("p/<slug:slug>/delete/", panel_views.delete, name="delete"),
    path("p/<slug:slug>/recipe.json", panel_views.export, name="export"),
    path("keys/", provider_views.api_keys, name="api_keys"),
    path("keys/providers/<int:pk>/", provider_views.provider_edit, name="provider_edit"),
    path("keys/providers/<int:pk>/delete/", provider_views.provider_delete, name="provider_delete"),
    path("keys/providers/<int:pk>/test/", provider_views.provider_test, name="provider_test"),
]
