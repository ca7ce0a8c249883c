"""Django's Redis cache, made safe to share one Redis server, plus an atomic hit counter.

Two changes to ``django.core.cache.backends.redis.RedisCache``:

- ``clear()`` deletes only this cache's keys (its ``KEY_PREFIX``). The stock one runs FLUSHDB,
  which on the broker's database would also drop every queued Dramatiq message.
- ``hit(key, window)`` counts one request in a fixed window with a Lua script (INCR, EXPIRE and
  TTL in one step), so concurrent requests from many web processes are all counted. The
  get-then-set of DRF's ``SimpleRateThrottle`` loses counts when requests race. ``hits(key)``
  reads a window's count without adding to it.
"""

from __future__ import annotations

import re
from typing import Any

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


class SharedRedisCache(RedisCache):
    """``RedisCache`` whose ``clear()`` stays within its prefix, with an atomic ``hit()``."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._hit_script: Any = None

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
