"""The platform's cache backend reuses one redis client per connection pool and behaves as Django's."""

from __future__ import annotations

from django.core.cache import cache

from apps.core.cache import RedisCacheClient


def test_one_client_per_pool_and_djangos_behaviour() -> None:
    inner = cache._cache  # type: ignore[attr-defined]
    assert isinstance(inner, RedisCacheClient)
    assert inner.get_client(write=True) is inner.get_client(write=False)  # one server: one pool, one client
    cache.set("core:test:cache", {"a": 1}, timeout=30)
    assert cache.get_many(["core:test:cache", "core:test:missing"]) == {"core:test:cache": {"a": 1}}
    assert cache.add("core:test:cache", 2) is False
    assert cache.add("core:test:counter", 0) is True
    assert cache.incr("core:test:counter") == 1
    cache.delete_many(["core:test:cache", "core:test:counter"])
    assert cache.get("core:test:cache") is None
