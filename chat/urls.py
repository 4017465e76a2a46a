from django.urls import path

from . import run_views, views

app_name = "chat"
urlpatterns = [
    path("", views.home, name="home"),
    path("c/new/", views.start, name="start"),
    path("c/<int:pk>/", views.room, name="room"),
    path("c/<int:pk>/messages/", views.send, name="send"),
    path("c/<int:pk>/delete/", views.delete, name="delete"),
    path("c/<int:pk>/rename/", views.rename, name="rename"),
    path("c/<int:pk>/share/", views.share, name="share"),
    path("s/<str:token>/", views.shared, name="shared"),
    path("p/<slug:slug>/use/", views.use_panel, name="use_panel"),
    path("runs/<int:pk>/cancel/", views.cancel, name="cancel"),
    path("runs/<int:pk>/trace/", run_views.run_trace, name="trace"),
    path("runs/<int:pk>/compare/", run_views.compare, name="compare"),
    path("runs/<int:pk>/vote/", run_views.vote, name="vote"),
    path("leaderboard/", run_views.leaderboard, name="leaderboard"),
    path("keys/api/new/", views.api_key_create, name="api_key_create"),
    path("keys/api/<int:pk>/revoke/", views.api_key_revoke, name="api_key_revoke"),
]
