from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chat.api.keys import TooManyKeys, create_key


class Command(BaseCommand):
    help = "Make an API key for a user and print it (it is shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="command line")
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="Create the user (without a password) if missing.",
        )

    def handle(self, *args, username, name, create_user, **options):
        users = get_user_model().objects
        user = users.filter(username=username).first()
        if user is None:
            if not create_user:
                raise CommandError(f"No user {username!r}; sign up first, or pass --create-user.")
            user = users.create_user(username)
        try:
            self.stdout.write(create_key(user, name)[1])
        except TooManyKeys as refused:
            raise CommandError(str(refused)) from None
