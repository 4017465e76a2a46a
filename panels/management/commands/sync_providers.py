from django.core.management.base import BaseCommand

from panels.catalog import sync_site_providers
from panels.presets import sync_presets


class Command(BaseCommand):
    help = "Create site-wide providers from API keys in the environment and the local models."

    def handle(self, *args, **options):
        for line in sync_site_providers() + sync_presets():
            self.stdout.write(f"provider: {line}")
