"""``make chaos``: an order storm against the real platform processes while a fault thread kills them, then an
auditor that proves nothing was lost, doubled or unbalanced.

Modules: ``config`` (one dataclass of knobs), ``services`` (our own PostgreSQL/Redis/Kafka instance, kill -9 and
restart), ``supervisor`` (the platform processes, restarted when they die), ``seed`` (database, topics, accounts),
``generator`` (seeded concurrent clients writing a JSONL history), ``faults`` (the fault thread), ``auditor``
(the invariants), ``__main__`` (the run). The chaos run never touches the shared development services: every
port and directory comes from ``ChaosConfig``.
"""
