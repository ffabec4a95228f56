"""A worker whose broker connection broke under an ack asks for its own warm shutdown (``apps.core.celery_watch``)."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from celery.signals import worker_init
from kombu.message import Message

from apps.core.celery_watch import REQUEST_LOGGER, AckFailureRestart


class _BrokenChannel:
    """What kombu's Redis channel does when the connection was reset under it: the ack raises."""

    no_ack_consumers = None

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        raise ConnectionError("Connection closed by server.")


def _ack_over_a_reset_connection(log: logging.Logger, tag: str) -> None:
    """kombu's own path for an ack that fails on a connection error: it logs CRITICAL and carries on."""
    message = Message(body=b"{}", delivery_tag=tag, channel=_BrokenChannel())  # type: ignore[no-untyped-call]
    message.ack_log_error(log, (ConnectionError,))  # type: ignore[no-untyped-call]


@pytest.fixture
def request_logger() -> Iterator[logging.Logger]:
    log = logging.getLogger(REQUEST_LOGGER)
    before = list(log.handlers)
    yield log
    log.handlers[:] = before


def test_a_failed_ack_asks_the_worker_for_one_warm_shutdown(request_logger: logging.Logger) -> None:
    sent: list[tuple[int, int]] = []
    request_logger.addHandler(AckFailureRestart(4242, kill=lambda pid, sig: sent.append((pid, sig))))

    _ack_over_a_reset_connection(request_logger, "tag-1")
    _ack_over_a_reset_connection(request_logger, "tag-2")

    assert sent == [(4242, signal.SIGTERM)], (
        "one SIGTERM (warm shutdown) to the worker, however many acks fail"
    )


def test_other_records_of_the_request_logger_do_nothing(request_logger: logging.Logger) -> None:
    sent: list[tuple[int, int]] = []
    request_logger.addHandler(AckFailureRestart(4242, kill=lambda pid, sig: sent.append((pid, sig))))

    request_logger.critical("Task handler raised error: %r", RuntimeError("boom"))
    request_logger.error(
        "Couldn't ack %r, reason:%r", "tag", ConnectionError()
    )  # below CRITICAL: not kombu's

    assert sent == []


def test_the_worker_init_signal_installs_it_once_in_the_worker_main_process(
    request_logger: logging.Logger, settings: Any
) -> None:
    import brokerage.celery  # noqa: F401  (connects the receiver, as the worker's import of the app does)

    request_logger.handlers[:] = [h for h in request_logger.handlers if not isinstance(h, AckFailureRestart)]
    settings.CELERY_WORKER_RESTART_ON_ACK_FAILURE = True
    worker_init.send(sender=None)
    worker_init.send(sender=None)

    installed = [h for h in request_logger.handlers if isinstance(h, AckFailureRestart)]
    assert len(installed) == 1
    assert installed[0].pid == os.getpid()


def test_the_test_settings_keep_it_off(request_logger: logging.Logger) -> None:
    """A worker started inside the test process (the bridge tests do) must never signal the test run."""
    import brokerage.celery  # noqa: F401

    request_logger.handlers[:] = [h for h in request_logger.handlers if not isinstance(h, AckFailureRestart)]
    worker_init.send(sender=None)

    assert not any(isinstance(h, AckFailureRestart) for h in request_logger.handlers)
