from django.urls import path

from . import views

app_name = "chat"
urlpatterns = [
    path("", views.home, name="home"),
    path("c/new/", views.start, name="start"),
    path("c/<int:pk>/", views.room, name="room"),
    path("c/<int:pk>/messages/", views.send, name="send"),
    path("c/<int:pk>/delete/", views.delete, name="delete"),
    path("runs/<int:pk>/cancel/", views.cancel, name="cancel"),
]
