from django.core.management.base import BaseCommand, CommandError

from panels.models import Provider
from panels.openrouter import SyncError, sync_models


class Command(BaseCommand):
    help = "Sync models and prices from OpenRouter's public model list into the catalog."

    def add_arguments(self, parser):
        parser.add_argument("--provider", default="OpenRouter", help="Site provider name.")

    def handle(self, *args, provider, **options):
        record = Provider.objects.filter(owner=None, name=provider).first()
        if record is None:
            raise CommandError(
                f"No site-wide provider named {provider!r}. Set OPENROUTER_API_KEY and run "
                "`python manage.py sync_providers` first."
            )
        try:
            created, updated = sync_models(record)
        except SyncError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{record}: {created} models added, {updated} updated.")
