"""Django's Redis cache, made safe to share one Redis server, plus an atomic hit counter.

Two changes to ``django.core.cache.backends.redis.RedisCache``:

- ``clear()`` deletes only this cache's keys (its ``KEY_PREFIX``). The stock one runs FLUSHDB,
  which on the broker's database would also drop every queued Dramatiq message.
- ``hit(key, window)`` counts one request in a fixed window with a Lua script (INCR, EXPIRE and
  TTL in one step), so concurrent requests from many web processes are all counted. The
  get-then-set of DRF's ``SimpleRateThrottle`` loses counts when requests race. ``hits(key)``
  reads a window's count without adding to it.

And two more uses of the same server: ``take_place``/``renew_place``/``give_place`` hold one of a
limited number of places under a key with a lease (a client's open streams,
mintsite/api/holds.py), and ``publish``/``subscriber`` carry messages on a channel named with the
cache's prefix (token status changes, mintsite/notifier.py).
"""

from __future__ import annotations

import re
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured

# The window starts with a key's first hit; a key left without a TTL (none should be, but a
# counter that never expires would lock a client out for good) gets one on its next hit.
_HIT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""

# A key's places: a sorted set of holders scored by the end of their lease (the server's clock,
# so web machines whose clocks differ agree). Lapsed leases are dropped first: a holder that
# died without giving its place back frees it when its lease ends. Returns {1, 0} when the
# place is taken, else {0, seconds until the first lease ends}.
_TAKE_PLACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, math.ceil(tonumber(first[2]) - now)}
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
redis.call('EXPIRE', KEYS[1], math.ceil(lease) + 1)
return {1, 0}
"""
_RENEW_PLACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[1])) + 1)
return 1
"""
_COUNT_PLACES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""


class SharedRedisCache(RedisCache):
    """``RedisCache`` whose ``clear()`` stays within its prefix, with an atomic ``hit()``."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._hit_script: Any = None
        self._scripts: dict[str, Any] = {}

    def _client(self) -> Any:
        return self._cache.get_client(write=True)

    def hit(self, key: str, window: int) -> tuple[int, int]:
        """Count one hit on ``key``: (hits in the current window, seconds until it ends)."""
        client = self._client()
        if self._hit_script is None:
            self._hit_script = client.register_script(_HIT)
        count, ttl = self._hit_script(
            keys=[self.make_and_validate_key(key)], args=[window], client=client
        )
        return int(count), max(int(ttl), 1)

    def hits(self, key: str) -> tuple[int, int]:
        """The hits counted on ``key`` in its current window and the seconds until it ends,
        without counting one; (0, 0) when no window is open."""
        client = self._client()
        with client.pipeline(transaction=False) as pipe:
            pipe.get(self.make_and_validate_key(key))
            pipe.ttl(self.make_and_validate_key(key))
            count, ttl = pipe.execute()
        if count is None:
            return 0, 0
        return int(count), max(int(ttl), 1)

    def _run(self, source: str, key: str, *args: Any) -> Any:
        client = self._client()
        if source not in self._scripts:
            self._scripts[source] = client.register_script(source)
        return self._scripts[source](
            keys=[self.make_and_validate_key(key)], args=list(args), client=client
        )

    def take_place(self, key: str, holder: str, limit: int, lease: float) -> tuple[bool, int]:
        """Take one of ``limit`` places under ``key`` for ``holder`` until ``lease`` seconds
        from now: (taken, seconds until the first held lease ends when it was not)."""
        taken, wait = self._run(_TAKE_PLACE, key, lease, limit, holder)
        return bool(taken), max(int(wait), 1)

    def renew_place(self, key: str, holder: str, lease: float) -> None:
        """Hold ``holder``'s place ``lease`` seconds more (nothing if it has lapsed)."""
        self._run(_RENEW_PLACE, key, lease, holder)

    def give_place(self, key: str, holder: str) -> None:
        self._client().zrem(self.make_and_validate_key(key), holder)

    def places_held(self, key: str) -> int:
        """How many places under ``key`` are held now."""
        return int(self._run(_COUNT_PLACES, key))

    def channel(self, name: str) -> str:
        """A pub/sub channel's name under this cache's prefix: stacks sharing one Redis (and
        test runs) hear only their own."""
        return self.make_and_validate_key(f"channel:{name}")

    def publish(self, name: str, message: str) -> int:
        """Send ``message`` to the subscribers of channel ``name``: how many heard it."""
        return int(self._client().publish(self.channel(name), message))

    def subscriber(self) -> Any:
        """A redis-py ``PubSub`` on this cache's server, on a connection of its own; it passes
        on the server's subscribe confirmations too (the notifier's cue that it listens)."""
        return self._client().pubsub()

    def clear(self) -> bool:
        if not self.key_prefix:
            raise ImproperlyConfigured(
                "the shared Redis cache needs a KEY_PREFIX (CACHE_KEY_PREFIX): without one, "
                "clear() could not tell its keys from the broker's"
            )
        # Glob characters in the prefix are escaped so the pattern matches only its own keys.
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.key_prefix) + ":*"
        client = self._client()
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        return True


def shared_cache() -> SharedRedisCache | None:
    """The default cache when it is the shared Redis one (the project's settings), else None."""
    cache = caches["default"]
    return cache if isinstance(cache, SharedRedisCache) else None
