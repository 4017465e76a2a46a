"""Serve one bundled local model with llama.cpp's OpenAI-compatible server.

    python manage.py serve_model qwen2.5-coder-1.5b
    python manage.py serve_model --prepare-only qwen2.5-coder-0.5b smollm2-135m ...

The server (from the `xllamacpp` wheel) runs inside this process, on its own
threads, while this process lives; SIGTERM or SIGINT (honcho, Ctrl+C, the test
fixture) stops it cleanly. `--prepare-only` downloads, assembles and verifies the
model files, then exits (`make models`).
"""

import resource
import signal
import threading
import time

from django.core.management.base import BaseCommand, CommandError

from panels import local_models


def _rss_mb() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


class Command(BaseCommand):
    help = "Serve one bundled local model (assembling and verifying its file first)."

    def add_arguments(self, parser):
        parser.add_argument("models", nargs="+", choices=sorted(local_models.LOCAL_MODELS))
        parser.add_argument(
            "--prepare-only",
            action="store_true",
            help="Download, assemble and verify the model files, then exit.",
        )
        parser.add_argument(
            "--keep-parts",
            action="store_true",
            help="With --prepare-only: keep the chunk packages installed after assembly.",
        )

    def say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def handle(self, *args, models, prepare_only, keep_parts, **options):
        chosen = [local_models.LOCAL_MODELS[key] for key in models]
        if prepare_only:
            for model in chosen:
                try:
                    path = local_models.prepare(model, self.say, free_parts=not keep_parts)
                except local_models.ModelFileError as exc:
                    raise CommandError(str(exc)) from None
                self.say(f"{model.key}: ready ({path})")
            return
        if len(chosen) != 1:
            raise CommandError("serve_model serves one model per process: name only one.")
        self.serve(chosen[0])

    def serve(self, model: local_models.LocalModel) -> None:
        try:
            path = local_models.model_file(model, self.say)
        except local_models.ModelFileError as exc:
            raise CommandError(str(exc)) from None
        import xllamacpp

        params = local_models.server_params(model, path)
        self.say(
            f"{model.key}: loading {path.name} ({path.stat().st_size / 1e6:,.0f} MB) with "
            f"llama.cpp (xllamacpp {xllamacpp.__version__}): {params.n_parallel} slots of "
            f"{params.n_ctx // params.n_parallel} tokens, {params.cpuparams.n_threads} thread "
            f"decoding ({params.cpuparams_batch.n_threads} reading prompts)"
        )
        started = time.monotonic()
        # Until the server is up, SIGTERM keeps its default action (end at once).
        try:
            server = xllamacpp.Server(params)
        except Exception as exc:
            raise CommandError(
                f"{model.display_name} could not start on port {model.port}: {exc}. "
                "Is another server using that port?"
            ) from None
        stop = threading.Event()
        received: list[str] = []

        def on_signal(signum, _frame):
            received.append(signal.Signals(signum).name)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.say(
            f"{model.key}: serving {model.base_url} (OpenAI API: /chat/completions, /models); "
            f"loaded in {time.monotonic() - started:.1f} s, {_rss_mb():,} MB resident"
        )
        while not stop.wait(1.0):
            pass
        self.say(f"{model.key}: {received[0]} received, stopping the server")
        del server  # joins llama.cpp's threads
        self.say(f"{model.key}: stopped")
