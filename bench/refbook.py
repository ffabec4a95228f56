"""The reference order book of the benchmark: a plain ``SortedDict`` of price levels, each a ``deque`` FIFO.

Price-time priority, fills at the resting order's price, no events, integer prices (ticks) and quantities.
It is the yardstick the engine and the PyPI books are divided by, so it is deliberately plain Python with no
tricks beyond the obvious ones.

Invariants:
- A level key is ``price`` on the ask side and ``-price`` on the bid side, so ``peekitem(0)`` is always the best
  level and an incoming order crosses a level exactly when ``key <= limit_key``.
- ``orders`` holds exactly the live resting orders; a canceled order is zeroed and left in its deque (O(1)
  cancel) and skipped when it reaches the head; ``Level.live`` counts the live ones and an empty level is removed.
"""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedDict

INF = float("inf")


class Level:
    __slots__ = ("live", "queue")

    def __init__(self) -> None:
        self.live = 0
        self.queue: deque[list[int]] = deque()  # [order_id, open_qty, key]


class RefBook:
    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()
        self.asks: SortedDict = SortedDict()
        self.orders: dict[int, tuple[list[int], bool]] = {}

    def _match(self, buy: bool, qty: int, limit_key: float) -> int:
        """Take up to ``qty`` from the opposite side at keys <= ``limit_key``; return the filled quantity."""
        side = self.asks if buy else self.bids
        orders = self.orders
        left = qty
        while left and side:
            key, lvl = side.peekitem(0)
            if key > limit_key:
                break
            q = lvl.queue
            while left and q:
                head = q[0]
                open_qty = head[1]
                if not open_qty:  # canceled earlier
                    q.popleft()
                    continue
                if open_qty <= left:
                    left -= open_qty
                    head[1] = 0
                    q.popleft()
                    lvl.live -= 1
                    del orders[head[0]]
                else:
                    head[1] = open_qty - left
                    left = 0
            if not lvl.live:
                del side[key]
        return qty - left

    def _rest(self, oid: int, buy: bool, qty: int, price: int) -> None:
        side = self.bids if buy else self.asks
        key = -price if buy else price
        lvl = side.get(key)
        if lvl is None:
            lvl = side[key] = Level()
        entry = [oid, qty, key]
        lvl.queue.append(entry)
        lvl.live += 1
        self.orders[oid] = (entry, buy)

    def limit(self, oid: int, buy: bool, qty: int, price: int) -> int:
        filled = self._match(buy, qty, price if buy else -price)
        if filled < qty:
            self._rest(oid, buy, qty - filled, price)
        return filled

    def ioc(self, buy: bool, qty: int, price: int) -> int:
        return self._match(buy, qty, price if buy else -price)

    def market(self, buy: bool, qty: int) -> int:
        return self._match(buy, qty, INF)

    def cancel(self, oid: int) -> bool:
        found = self.orders.pop(oid, None)
        if found is None:
            return False
        entry, buy = found
        entry[1] = 0
        side = self.bids if buy else self.asks
        lvl = side[entry[2]]
        lvl.live -= 1
        if not lvl.live:
            del side[entry[2]]
        return True

    def __len__(self) -> int:
        return len(self.orders)
