from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views as entry

from . import accounts

urlpatterns = [
    path("signup/", entry.signup, name="signup"),
    path("login/", entry.login_view, name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", accounts.account, name="account"),
    path(
        "password/",
        auth_views.PasswordChangeView.as_view(success_url="/accounts/?password=changed"),
        name="password_change",
    ),
]
