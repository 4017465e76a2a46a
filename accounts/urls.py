from django.contrib.auth import views as auth_views
from django.urls import path

from . import account_views
from . import views as entry

urlpatterns = [
    path("signup/", entry.signup, name="signup"),
    path("login/", entry.login_view, name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", account_views.account, name="account"),
    path("password/", entry.password_change, name="password_change"),
]
