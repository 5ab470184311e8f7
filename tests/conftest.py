"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lineguard.stack import LocalStack
from tests.support.proxy import PausableTcpProxy


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """A Tansu broker and an InfluxDB, started once per test session.

    Tests share it, so each should use its own topic and database names.
    """
    with LocalStack() as stack:
        yield stack


@pytest.fixture(scope="session")
def proxied_stack() -> Iterator[LocalStack]:
    """A second stack whose broker is reached through a pausable TCP proxy.

    For fault injection: ``proxied_stack.proxy.pause()`` cuts the network
    path to the broker, and its InfluxDB may be stopped and restarted, so
    tests that need neither use ``local_stack``.
    """
    with LocalStack(kafka_proxy=PausableTcpProxy) as stack:
        yield stack


_REAL_SERVERS = {"local_stack", "proxied_stack"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a test that starts the real servers without the ``integration``
    marker: ``-m 'not integration'`` must never start a broker or influxd."""
    unmarked = [
        item.nodeid
        for item in items
        if _REAL_SERVERS & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("integration") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests using the real stack need @pytest.mark.integration: " + ", ".join(unmarked)
        )
