"""Counting in fixed windows in Redis: the API's requests a minute, a user's runs
a minute, failed log-ins. A window opens with its first count and lasts its length
(not a wall-clock minute, whose boundary would let a burst through twice)."""


def count(client, keys: list[str], window_s: int) -> list[tuple[int, int]]:
    """Add one to each key's window, in one round trip; returns (count, seconds left
    in the window) for each key."""
    with client.pipeline() as pipe:
        for key in keys:
            pipe.set(key, 0, ex=window_s, nx=True)  # opens the window (any Redis version)
            pipe.incr(key)  # keeps the window's expiry
            pipe.ttl(key)
        replies = pipe.execute()
    return [(int(replies[i + 1]), max(int(replies[i + 2]), 1)) for i in range(0, len(replies), 3)]
