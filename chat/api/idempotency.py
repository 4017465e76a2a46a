"""`Idempotency-Key` on POST /v1/chat/completions and /v1/responses: a request sent
again (an SDK's retry after a 502 or a cut connection) is answered with the run the
first one started, streamed or not, and starts none.

The key is the caller's, scoped to their API key, kept 24 hours in Redis
(`fr:idem:<api key>:<sha256 of the key>` → the run, its conversation, and a hash of the door
and the body). A request claims its key before starting its run (SET NX, held a
minute until the run is named, so a crash between the two frees it soon); a second
request with the key follows that run, or, when the first is still starting, is told
to retry in a second (409, `x-should-retry: true`). The same key with another body
is a 409 that is not retried: the caller reused a key by mistake. docs/RELIABILITY.md
says what is kept and for how long.
"""

import hashlib
import json
from dataclasses import dataclass

from django.http import JsonResponse

from chat.engine.live import sync_redis

from .errors import error

HEADER = "Idempotency-Key"
KEEP_S = 24 * 3600
STARTING_S = 60  # a claim whose run is not yet named
MAX_CHARS = 255


@dataclass(frozen=True)
class Claim:
    """This request holds the key: it starts the run, then `record`s it."""

    redis_key: str
    body_hash: str


@dataclass(frozen=True)
class Earlier:
    """A request with this key started this run: follow it."""

    run_id: int
    conversation: str


def _conflict(message: str, code: str, retry: bool) -> JsonResponse:
    headers = {"x-should-retry": "true" if retry else "false"}
    if retry:
        headers["Retry-After"] = "1"
    return error(409, message, param=HEADER, code=code, headers=headers)


def claim(request, record, door: str) -> Claim | Earlier | JsonResponse | None:
    """What to do with this request's key: None (it sent none), a Claim (start the
    run), the Earlier run to follow, or an error response."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_CHARS or not key.isascii() or not key.isprintable():
        return error(
            400,
            f"`{HEADER}` must be 1 to {MAX_CHARS} printable ASCII characters.",
            param=HEADER,
        )
    redis_key = f"fr:idem:{record.pk}:{hashlib.sha256(key.encode()).hexdigest()}"
    # The alias header changes what the body means (`openrouter/fusion`, a panel or a
    # model): a request that says otherwise is another request.
    alias = request.headers.get("X-Fusion-Alias", "").strip().lower()
    body_hash = hashlib.sha256(f"{door}\n{alias}\n".encode() + request.body).hexdigest()
    client = sync_redis()
    try:
        held = json.dumps({"body": body_hash, "run": None})
        if client.set(redis_key, held, nx=True, ex=STARTING_S):
            return Claim(redis_key, body_hash)
        stored = client.get(redis_key)
    finally:
        client.close()
    earlier = json.loads(stored) if stored else None
    if earlier is None:  # expired between the two commands: as good as in use
        return _conflict(f"This `{HEADER}` is in use; retry.", "idempotency_key_in_use", True)
    if earlier["body"] != body_hash:
        return _conflict(
            f"This `{HEADER}` was used in the last 24 hours with another request (another "
            "body or endpoint): send a new key for a new request.",
            "idempotency_key_reused",
            False,
        )
    if earlier["run"] is None:
        return _conflict(
            f"A request with this `{HEADER}` is still starting its run; retry in a second.",
            "idempotency_key_in_use",
            True,
        )
    return Earlier(earlier["run"], earlier["conversation"])


def record(held: Claim, run_id: int, conversation: str) -> None:
    """Name the run this key started, for 24 hours."""
    value = json.dumps({"body": held.body_hash, "run": run_id, "conversation": conversation})
    client = sync_redis()
    try:
        client.set(held.redis_key, value, ex=KEEP_S)
    finally:
        client.close()


def release(held: Claim) -> None:
    """The run was refused (a limit) or never started: the key is free again, so a
    retry after the limit renews is a new attempt, not the refusal replayed."""
    client = sync_redis()
    try:
        client.delete(held.redis_key)
    finally:
        client.close()
