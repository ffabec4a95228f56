"""The engine process never hangs: no provable input progress for ``--stall-timeout`` s -> it exits (status 70).

Chaos (Kafka killed with -9 and restarted) left ``run_engine`` alive but never progressing, orders pending; a
reproduction against a private broker showed its input partitions answering ``_UNKNOWN_PARTITION`` after the
restart. The shared broker cannot be killed here, so the same condition is made real by deleting the engine's
command topic under it: its lag cannot be known any more, so it must exit for its supervisor (a restart recovers
exactly once, see ``test_engine_runner.test_sigkill_mid_stream_then_restart_matches_uncrashed_twin``). While
merely idle and caught up, it must keep running.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from apps.core import kafka
from apps.orders.engine_runner import COMMIT_STALL_S, STALL_EXIT_CODE, _txn_retrying, stall_reason
from tests.orders.engine_kafka_helpers import (
    by_key,
    committed,
    envelope_bytes,
    fills,
    make_topics,
    produce,
    read_all,
    twin,
    workload,
)
from tests.orders.test_engine_runner import ROOT, _engine_argv, _env, _group, _wait_committed

pytestmark = [pytest.mark.kafka]


def test_engine_exits_when_input_progress_cannot_be_shown(fresh_topic: Any) -> None:
    topics = make_topics(fresh_topic, partitions=1)
    group = _group()
    cmds = workload(seed=7, n=40, symbols=["AAPL"])
    delivered = produce(
        topics.commands, [(0, sym, envelope_bytes(cmd, i)) for i, (sym, cmd) in enumerate(cmds)]
    )

    argv = _engine_argv(topics, group, "0", "--stall-timeout", "2")
    proc = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_committed(topics, group, {0: 40})
        # Caught up and idle for several stall periods (progress checks run every 0.5 s): still running.
        time.sleep(5)
        assert proc.poll() is None
        incarnation = kafka.topic_id(topics.commands)
        kafka.topics_delete([kafka.topic_name(topics.commands)])
        returncode = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read() if proc.stderr is not None else b""
    assert returncode == STALL_EXIT_CODE, stderr.decode()[-3000:]
    assert b"engine stalled, exiting for a restart" in stderr
    assert b"no input progress for" in stderr

    reference = twin(delivered, topics, incarnation=incarnation)  # everything before the outage: exactly once
    output = read_all(topics.events)
    assert by_key(output) == reference.events_by_key
    fill_ids = fills(output)
    assert len(fill_ids) == len(set(fill_ids)) > 0
    assert committed(topics.commands, group, [0]) in (
        {0: 40},
        {0: -1001},
    )  # -1001: topic gone with its offsets


def test_stall_reason_counts_a_stuck_commit_even_while_input_moves() -> None:
    # Seen against a broker killed and restarted: every commit worker blocked in send_offsets_to_transaction for
    # minutes while the main loop kept applying input, so input progress alone never showed the stall.
    now = 1000.0
    assert stall_reason(now=now, progress_at=now, commits_started=[], stall_timeout=60) is None
    assert (
        stall_reason(now=now, progress_at=now, commits_started=[now - COMMIT_STALL_S + 1], stall_timeout=60)
        is None
    )
    reason = stall_reason(
        now=now, progress_at=now - 1, commits_started=[now - 5, now - COMMIT_STALL_S - 1], stall_timeout=60
    )
    assert reason == f"a commit in flight for {COMMIT_STALL_S + 1:.1f} s"
    assert stall_reason(now=now, progress_at=now - 61, commits_started=[], stall_timeout=60) == (
        "no input progress for 61.0 s"
    )


def _failing(*errors: KafkaError) -> tuple[list[int], Callable[[], None]]:
    calls: list[int] = []

    def call() -> None:
        calls.append(1)
        if len(calls) <= len(errors):
            raise KafkaException(errors[len(calls) - 1])

    return calls, call


def test_a_transaction_call_is_retried_while_its_error_is_retriable_only() -> None:
    # Seen under chaos right after a broker restart: send_offsets_to_transaction failed at once with a retriable
    # _TRANSPORT error, and the engine exited for a restart; librdkafka asks for the same call again.
    transport = KafkaError(KafkaError._TRANSPORT, "Broker transport failure (after 0ms)", retriable=True)
    calls, call = _failing(transport, transport)
    _txn_retrying(call, 0)
    assert len(calls) == 3

    for error in (
        KafkaError(KafkaError._FENCED, "fenced", fatal=True),
        KafkaError(KafkaError.NOT_COORDINATOR, "abort", retriable=True, txn_requires_abort=True),
        KafkaError(KafkaError._STATE, "not in a transaction"),
    ):
        calls, call = _failing(error)
        with pytest.raises(KafkaException) as raised:
            _txn_retrying(call, 0)
        assert raised.value.args[0] is error
        assert len(calls) == 1
