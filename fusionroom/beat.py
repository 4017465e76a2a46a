"""One beat in the whole site, however many are started: a lease in Redis.

Beat's schedule (the sweeper every third of RUN_HEARTBEAT_TTL_S, evaluations' resume
every 30 s) must be sent once per interval, not once per beat process. A second beat
started by mistake, or on purpose on a second host so that the schedule outlives a
host, would otherwise send every task twice. Each beat process tries to hold
`fr:beat:leader` (SET NX with BEAT_LEASE_TTL_S); the holder renews it every third of
that and sends the schedule, the others send nothing and ask again every second. When the
holder dies its lease lapses and another beat takes over within BEAT_LEASE_TTL_S; a
holder stopped with SIGTERM gives the lease back at once.

Settings: CELERY_BEAT_SCHEDULER names this class (tests/test_cluster.py starts beat
twice and counts what is sent).
"""

import logging
import os
import secrets
import socket

import redis
from celery.beat import PersistentScheduler
from django.conf import settings

log = logging.getLogger(__name__)

LEASE_KEY = "fr:beat:leader"
STANDBY_ASK_EVERY_S = 1.0
# Renew (or give back) the lease only while it is still ours: a beat that paused past
# its lease must not take it from the one that took over.
_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return {} else return 0 end"
_RENEW = _IF_OURS.format("redis.call('expire', KEYS[1], ARGV[2])")
_RELEASE = _IF_OURS.format("redis.call('del', KEYS[1])")


class LeaderScheduler(PersistentScheduler):
    """Celery's own scheduler (its schedule file included), ticking only while this
    process holds the site's beat lease."""

    def __init__(self, *args, **kwargs):
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.lease_s = settings.BEAT_LEASE_TTL_S
        self.leading = False
        self.client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5
        )
        super().__init__(*args, **kwargs)

    @property
    def renew_every(self) -> float:
        return self.lease_s / 3

    def _hold_lease(self) -> bool:
        try:
            if self.leading and self.client.eval(_RENEW, 1, LEASE_KEY, self.identity, self.lease_s):
                return True
            return bool(self.client.set(LEASE_KEY, self.identity, nx=True, ex=self.lease_s))
        except redis.RedisError as exc:
            # Without Redis no task can be sent anyway (it is the broker).
            log.warning("beat %s: Redis unreachable, not sending: %s", self.identity, exc)
            return False

    def tick(self, *args, **kwargs):
        leading = self._hold_lease()
        if leading != self.leading:
            if leading:
                log.warning("beat %s holds the lease: it sends the schedule", self.identity)
            else:
                log.warning("beat %s lost the lease: another beat sends", self.identity)
        self.leading = leading
        if not leading:
            # Asking every second costs one SET; a Redis that comes back is used at once.
            return min(self.renew_every, STANDBY_ASK_EVERY_S)
        return min(super().tick(*args, **kwargs), self.renew_every)

    def close(self):
        try:
            if self.leading:
                self.client.eval(_RELEASE, 1, LEASE_KEY, self.identity)
        except redis.RedisError:
            pass  # the lease lapses by itself
        finally:
            self.client.close()
            super().close()
