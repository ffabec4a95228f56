"""``marketdata_cache_reset``: after the engine's topics are recreated, ``book_seq`` restarts and the cache must too."""

from __future__ import annotations

from io import StringIO
from typing import Any

from django.core.management import call_command

from apps.marketdata import cache


def test_recreated_topics_need_the_cache_reset_and_it_keeps_reference_prices(md_redis: Any) -> None:
    assert cache.cas_set(cache.trade_key("AAPL"), seq=900, data=b'{"p":"100"}') == 1
    assert cache.book_apply("AAPL", side="buy", seq=901, price_e4=1_000_000, level="5000000000:1") == 1
    md_redis.set(cache.ref_key("AAPL"), "100.25")
    # The new incarnation's first events (book_seq from 1) are refused by the stale cache...
    assert cache.cas_set(cache.trade_key("AAPL"), seq=1, data=b'{"p":"101"}') == 0

    out = StringIO()
    call_command("marketdata_cache_reset", stdout=out)  # without --yes: counts, deletes nothing
    assert "would delete (pass --yes) 3 market-data cache keys" in out.getvalue()
    assert cache.cas_set(cache.trade_key("AAPL"), seq=2, data=b'{"p":"101"}') == 0

    call_command("marketdata_cache_reset", "--yes", stdout=out)
    assert "deleted 3 market-data cache keys" in out.getvalue()
    # ... and accepted after the reset; the reference price (no book_seq) is kept.
    assert cache.cas_set(cache.trade_key("AAPL"), seq=1, data=b'{"p":"101"}') == 1
    assert md_redis.get(cache.ref_key("AAPL")) == b"100.25"
    assert md_redis.exists(cache.book_key("AAPL"), cache.book_side_key("AAPL", "buy")) == 0
