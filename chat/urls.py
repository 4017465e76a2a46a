from django.urls import path
from django.views.generic import RedirectView

from . import export, run_views, views

app_name = "chat"
urlpatterns = [
    path("", views.home, name="home"),
    path("search/", views.search_page, name="search"),
    path("c/new/", views.start, name="start"),
    path("c/<int:pk>/", views.conversation, name="conversation"),
    path("c/<int:pk>/messages/", views.send, name="send"),
    path("c/<int:pk>/delete/", views.delete, name="delete"),
    path("c/<int:pk>/rename/", views.rename, name="rename"),
    path("c/<int:pk>/share/", views.share, name="share"),
    path("c/<int:pk>/messages/<int:message>/edit/", views.edit, name="edit"),
    path("c/<int:pk>/messages/<int:message>/regenerate/", views.regenerate, name="regenerate"),
    path("c/<int:pk>/messages/<int:message>/show/", views.show_version, name="show_version"),
    path("c/<int:pk>/export.<str:fmt>", export.owned, name="export"),
    path("s/<str:token>/export.<str:fmt>", export.shared, name="export_shared"),
    path("s/<str:token>/", views.shared, name="shared"),
    path("p/<slug:slug>/use/", views.use_panel, name="use_panel"),
    path("runs/<int:pk>/cancel/", views.cancel, name="cancel"),
    path("runs/<int:pk>/trace/", run_views.run_trace, name="trace"),
    path("runs/<int:pk>/compare/", run_views.compare, name="compare"),
    path("runs/<int:pk>/blind-vote/", run_views.blind_vote, name="blind_vote"),
    # The blind vote's address before it had its own word; old links still arrive.
    path(
        "runs/<int:pk>/vote/", RedirectView.as_view(pattern_name="chat:blind_vote", permanent=True)
    ),
    path("leaderboard/", run_views.leaderboard, name="leaderboard"),
    path("keys/api/new/", views.api_key_create, name="api_key_create"),
    path("keys/api/<int:pk>/revoke/", views.api_key_revoke, name="api_key_revoke"),
]
