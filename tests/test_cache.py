"""The cache backend (`selfos.cache`): Django's Redis cache, one Redis client per pool."""

import multiprocessing
import uuid

from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCacheClient


def test_every_call_shares_one_client_and_the_cache_still_works() -> None:
    client = caches["default"]._cache
    assert client.get_client() is client.get_client(write=True)  # one server: one pool, one client
    key = f"test-cache:{uuid.uuid4()}"
    assert cache.add(key, "first", timeout=5)
    assert not cache.add(key, "second", timeout=5)
    assert cache.get_many([key]) == {key: "first"}
    cache.delete(key)
    assert cache.get(key) is None


def _write_in_child(key: str, parents_client: int) -> None:
    client = caches["default"]._cache.get_client()
    if id(client) != parents_client:
        raise SystemExit(3)  # not the inherited client: the test would prove nothing
    cache.set(key, "from the child", timeout=5)  # on a connection of its own, from the inherited pool


def test_a_forked_worker_process_uses_the_parents_client_safely() -> None:
    """A prefork worker's child inherits the client: redis-py gives it connections of its own."""
    parent_key, child_key = f"test-cache:{uuid.uuid4()}", f"test-cache:{uuid.uuid4()}"
    cache.set(parent_key, "from the parent", timeout=5)  # the parent's pool has a connection now
    parents_client = id(caches["default"]._cache.get_client())
    fork = multiprocessing.get_context("fork")
    child = fork.Process(target=_write_in_child, args=(child_key, parents_client))
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert cache.get_many([parent_key, child_key]) == {
        parent_key: "from the parent",
        child_key: "from the child",
    }


def test_django_builds_a_client_per_call_which_is_what_this_backend_avoids() -> None:
    """The reason for the backend: if Django reuses its client one day, drop `selfos.cache`."""
    plain = RedisCacheClient(["redis://127.0.0.1:6379/0"])
    assert plain.get_client() is not plain.get_client()
