"""One exception base for the whole project.

Every error LineGuard raises on purpose derives from :class:`LineGuardError`,
so the command line can tell "the user's input, configuration or environment
is wrong" (print one line naming what was expected, what arrived and where;
exit 1 or 2) from "LineGuard has a bug" (show the traceback). The message of
such an error is meant for a plant engineer: one line, no stack frames.

This module imports nothing else of the project, so every stage folder
(``ingest``, ``detectors``, ``models``, ``dashboards``) can import it without
breaking the layering. The subclasses also derive from the builtin exception
an older caller may catch (``ValueError``, ``LookupError`` ...).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "LineGuardError",
    "MissingSensorsError",
    "ServiceUnreachable",
]


class LineGuardError(Exception):
    """Base of every error LineGuard raises on purpose.

    ``exit_code`` is what the command line exits with: 1 for a failure at run
    time (a service down, bad data), 2 for a usage or configuration mistake
    (the same code click uses for a bad option).
    """

    exit_code: int = 1


class ConfigError(LineGuardError, ValueError):
    """A setting that can never work (a URL without a scheme, a port that is
    not a number); the message names the setting (``LINEGUARD_...``)."""

    exit_code = 2


class DataError(LineGuardError, ValueError):
    """Input data that does not have the expected form (a CSV row, a record,
    a label); the message names the file and line or the record."""


class MissingSensorsError(DataError):
    """Data that lacks sensors a model needs, where imputing them silently
    would make the result meaningless (training, evaluation, comparison).

    Attributes
    ----------
    missing : tuple of str
        The model's sensors that the data does not have.
    """

    def __init__(self, message: str, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.missing = tuple(missing)


class ServiceUnreachable(LineGuardError, ConnectionError):
    """A service (InfluxDB, Kafka, Grafana) did not answer as expected; the
    message names the endpoint (credentials redacted) and the setting."""
