"""Django's Redis cache, with one Redis client per connection pool instead of one per operation.

Django's `RedisCacheClient.get_client` builds a new `redis.Redis` around the pool for every
cache call, and redis-py's constructor costs about as much CPU as the call's round trip
(179 µs against 162 µs for a `SET NX` on loopback here; a cache `add` took 429 µs through
Django's client and 171 µs through this one). The outbox makes several cache calls
for every message (the coalescing mark, the relay's kick, the vectors memory and the story
share), so a completion answered on its own paid for a dozen clients. A client holds no
connection of its own (the pool does, and redis-py resets a pool in a forked child), so one
per pool is safe to share between threads and across a prefork worker's fork.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class ReusedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient
