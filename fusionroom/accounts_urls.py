from django.contrib.auth import views as auth_views
from django.urls import path

from . import accounts

urlpatterns = [
    path("signup/", accounts.signup, name="signup"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", accounts.account, name="account"),
    path(
        "password/",
        auth_views.PasswordChangeView.as_view(success_url="/accounts/?password=changed"),
        name="password_change",
    ),
]
