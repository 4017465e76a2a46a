from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_site_providers(sender, **kwargs):
    from .catalog import sync_site_providers
    from .presets import sync_presets

    sync_site_providers()
    sync_presets()


class PanelsConfig(AppConfig):
    name = "panels"
    verbose_name = "Panels and providers"

    def ready(self):
        # Every `migrate` (make run does one at start) brings the site-wide
        # providers in line with the environment and the bundled models.
        post_migrate.connect(_sync_site_providers, sender=self)
