"""Print the URL once /healthz answers 200 (run in the background by `make run`).

If the app answers but is not whole after a few minutes, say which parts are
failing. If the web server goes away (Ctrl+C), leave quietly.
"""

import sys
import time

import httpx

TIMEOUT_S = 300


def main(url: str) -> None:
    started = time.monotonic()
    body: dict | None = None
    while time.monotonic() - started < TIMEOUT_S:
        time.sleep(1)
        try:
            response = httpx.get(f"{url}/healthz", timeout=5)
        except httpx.HTTPError:
            if body is not None:
                return  # it answered before and is gone now: stopped
            continue
        if response.status_code == 200:
            print(f"\n  Fusion Room is ready ({time.monotonic() - started:.0f} s): {url}/\n")
            return
        body = response.json()
    if body is not None:
        failing = ", ".join(body.get("failing", []))
        print(
            f"\n  Fusion Room is not whole after {TIMEOUT_S} s: {failing} failing ({url}/healthz)"
        )


if __name__ == "__main__":
    main(sys.argv[1])
