from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from . import local_models


@login_required
def panel_list(request):
    return render(request, "panels/list.html", {"local_models": local_models.enabled()})


@login_required
def api_keys(request):
    return render(request, "panels/api_keys.html")
