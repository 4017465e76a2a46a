"""The Celery app. Workers run with the threads pool (see Procfile): model calls
are I/O-bound, each task drives its upstream streams on its own asyncio loop."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionroom.settings")

app = Celery("fusionroom")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
