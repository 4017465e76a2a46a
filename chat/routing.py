from django.urls import path

from .consumers import RoomConsumer

websocket_urlpatterns = [
    path("ws/conversations/<int:pk>/", RoomConsumer.as_asgi()),
]
