"""Print the URL once /healthz answers 200 (run in the background by `make run`).

It waits quietly for the model servers and the web server to listen before asking
/healthz, so that the log is not filled with 503s while the models load. If the app
answers but is not whole after a few minutes, it says which parts are failing; if
the web server goes away (Ctrl+C), it leaves quietly.
"""

import os
import socket
import sys
import time
from pathlib import Path

import httpx

TIMEOUT_S = 300
ROOT = Path(__file__).resolve().parent.parent


def _up(url: str) -> bool:
    """The web server listens; a model server lists its model (it is loaded)."""
    if url.endswith("/v1"):
        try:
            return httpx.get(f"{url}/models", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    address = httpx.URL(url)
    try:
        with socket.create_connection((address.host, address.port or 80), timeout=1):
            return True
    except OSError:
        return False


def main(url: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fusionroom.settings")
    import django

    django.setup()
    from panels import local_models

    started = time.monotonic()
    waiting = [url] + [model.base_url for model in local_models.enabled()]
    body: dict | None = None
    while time.monotonic() - started < TIMEOUT_S:
        time.sleep(1)
        waiting = [address for address in waiting if not _up(address)]
        if waiting:
            continue
        try:
            response = httpx.get(f"{url}/healthz", timeout=5)
        except httpx.HTTPError:
            return  # it answered before and is gone now: stopped
        if response.status_code == 200:
            print(f"\n  Fusion Room is ready ({time.monotonic() - started:.0f} s): {url}/\n")
            return
        body = response.json()
        time.sleep(2)
    if body is not None:
        failing = ", ".join(body.get("failing", []))
        print(
            f"\n  Fusion Room is not whole after {TIMEOUT_S} s: {failing} failing ({url}/healthz)"
        )


if __name__ == "__main__":
    main(sys.argv[1])
