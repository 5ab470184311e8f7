"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lineguard.stack import LocalStack


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """A Tansu broker and an InfluxDB, started once per test session.

    Tests share it, so each should use its own topic and database names.
    """
    with LocalStack() as stack:
        yield stack
