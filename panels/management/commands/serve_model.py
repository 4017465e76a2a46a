"""Serve one bundled local model with llama.cpp's OpenAI-compatible server.

    python manage.py serve_model qwen2.5-coder-0.5b

The process replaces itself with the server (exec), so a process manager such as
honcho sends its signals straight to llama.cpp.
"""

import os
import sys

from django.core.management.base import BaseCommand, CommandError

from panels import local_models


class Command(BaseCommand):
    help = "Serve one bundled local model (assembling and verifying its file first)."

    def add_arguments(self, parser):
        parser.add_argument("model", choices=sorted(local_models.LOCAL_MODELS))
        parser.add_argument(
            "--prepare-only",
            action="store_true",
            help="Assemble and verify the model file, then exit.",
        )

    def handle(self, *args, model, prepare_only, **options):
        local_model = local_models.LOCAL_MODELS[model]
        try:
            command = local_models.server_command(local_model, sys.executable)
        except local_models.ModelFileError as exc:
            raise CommandError(str(exc)) from None
        if prepare_only:
            self.stdout.write(f"{local_model.display_name}: {command[4]} verified.")
            return
        self.stdout.write(
            f"Serving {local_model.display_name} at {local_model.base_url} "
            f"(n_ctx {command[command.index('--n_ctx') + 1]})"
        )
        self.stdout.flush()
        # llama.cpp's server reads HOST and PORT from the environment over its own
        # flags, and process managers such as honcho set PORT for every process.
        env = {k: v for k, v in os.environ.items() if k.upper() not in ("HOST", "PORT")}
        os.execve(command[0], command, env)
