"""EMF metric lines: exact document shape, queue depth from the real Redis broker, reconciliation break count."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from apps.core.emf import emf_emit, emf_metric_line
from apps.core.tasks import celery_queue_depth_publish, celery_queue_names
from apps.settlement.reconciliation import reconciliation_run
from brokerage.celery import app
from tests.settlement.test_reconciliation import _books, _edit_lot


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def test_metric_line_is_the_exact_emf_document() -> None:
    line = emf_metric_line(
        namespace="Brokerage",
        metrics={"CeleryQueueDepth": 7, "Latency": 1.5},
        dimensions={"Queue": "default", "Env": "prod"},
        unit="Count",
        timestamp_ms=1_764_097_200_000,
    )
    assert "\n" not in line
    assert json.loads(line) == {
        "_aws": {
            "Timestamp": 1_764_097_200_000,
            "CloudWatchMetrics": [
                {
                    "Namespace": "Brokerage",
                    "Dimensions": [["Env", "Queue"]],
                    "Metrics": [
                        {"Name": "CeleryQueueDepth", "Unit": "Count"},
                        {"Name": "Latency", "Unit": "Count"},
                    ],
                }
            ],
        },
        "Queue": "default",
        "Env": "prod",
        "CeleryQueueDepth": 7,
        "Latency": 1.5,
    }


def test_no_dimensions_is_the_empty_dimension_set() -> None:
    doc = json.loads(emf_metric_line(namespace="Brokerage", metrics={"X": 0}, dimensions={}, timestamp_ms=1))
    assert doc == {
        "_aws": {
            "Timestamp": 1,
            "CloudWatchMetrics": [
                {"Namespace": "Brokerage", "Dimensions": [[]], "Metrics": [{"Name": "X", "Unit": "Count"}]}
            ],
        },
        "X": 0,
    }


@pytest.mark.parametrize(
    ("metrics", "dimensions", "match"),
    [
        pytest.param({}, {}, "at least one metric", id="no-metrics"),
        pytest.param({"Queue": 1}, {"Queue": "default"}, "distinct", id="metric-named-like-dimension"),
        pytest.param({"_aws": 1}, {}, "distinct", id="metric-named-_aws"),
    ],
)
def test_invalid_documents_are_refused(
    metrics: dict[str, int], dimensions: dict[str, str], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        emf_metric_line(namespace="Brokerage", metrics=metrics, dimensions=dimensions)


def test_emit_writes_one_flushed_line_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    line = emf_emit(metrics={"ReconciliationBreaks": 2}, dimensions={}, timestamp_ms=5)
    out = capsys.readouterr().out
    assert out == line + "\n"
    doc = json.loads(out)
    assert doc["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Brokerage"
    # Never the empty dimension set: the environment is always a dimension (what the CDK alarms read).
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Environment"]]
    assert doc["Environment"] == "local"


def test_emit_environment_comes_from_settings(capsys: pytest.CaptureFixture[str], settings: Any) -> None:
    settings.METRICS_ENVIRONMENT = "production"
    doc = json.loads(emf_emit(metrics={"X": 1}, dimensions={"Queue": "default"}, timestamp_ms=5))
    assert doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Environment", "Queue"]]
    assert (doc["Environment"], doc["Queue"]) == ("production", "default")


def test_configured_queues_are_those_the_worker_consumes() -> None:
    assert celery_queue_names() == ["compliance", "default", "settlement"]


@pytest.fixture
def test_queue() -> Iterator[str]:
    name = f"emf-test-{uuid.uuid4().hex}"
    yield name
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.client.delete(*[f"{name}{channel.sep}{p}" if p else name for p in channel.priority_steps])
        # send_task declared the queue: drop its kombu binding records too.
        channel.client.delete(f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")


def test_queue_depth_counts_every_priority_list_in_the_broker(
    test_queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = f"{test_queue}-empty"
    for _ in range(3):
        app.send_task("tests.never_run", queue=test_queue)
    for _ in range(2):  # kombu keeps priorities > 0 in separate lists (<queue>\x06\x16<step>)
        app.send_task("tests.never_run", queue=test_queue, priority=9)
    capsys.readouterr()

    depths = celery_queue_depth_publish(queues=[test_queue, empty])

    assert depths == {test_queue: 5, empty: 0}
    lines = _lines(capsys.readouterr().out)
    assert [
        (d["_aws"]["CloudWatchMetrics"][0]["Dimensions"], d.get("Queue"), d["CeleryQueueDepth"])
        for d in lines
    ] == [
        ([["Environment", "Queue"]], test_queue, 5),
        ([["Environment", "Queue"]], empty, 0),
        ([["Environment"]], None, 5),
    ]
    assert {d["_aws"]["CloudWatchMetrics"][0]["Namespace"] for d in lines} == {"Brokerage"}
    # Measuring does not consume: the backlog is still there.
    assert celery_queue_depth_publish(queues=[test_queue]) == {test_queue: 5}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("broken", "expected"), [pytest.param(False, 0, id="clean"), pytest.param(True, 1, id="one-break")]
)
def test_reconciliation_run_emits_its_break_count(
    broken: bool, expected: int, capsys: pytest.CaptureFixture[str]
) -> None:
    account = _books()
    if broken:
        _edit_lot(account.pk)
    capsys.readouterr()
    report = reconciliation_run(job="positions_vs_lots")
    assert len(report.breaks) == expected
    lines = _lines(capsys.readouterr().out)
    assert [(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"], d["ReconciliationBreaks"]) for d in lines] == [
        ([["Environment"]], expected)
    ]
