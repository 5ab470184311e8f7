"""The ``lineguard`` command line: one module per command group.

=================  ==========================================================
module             commands
=================  ==========================================================
``gateway``        ``gateway replay``
``train``          ``train``
``models``         ``models list|show|promote|rollback|diff|shadow|compare|evaluate``
``evaluate``       ``evaluate DIR`` (labelled folders through the worker's path)
``feedback``       ``feedback mark|alert|list``
``dashboards``     ``dashboards generate|push``, ``report incident``
``worker``         ``worker``
``stack``          ``stack up``
``demo``           ``demo``
``settings``       ``settings [--markdown]``
=================  ==========================================================

Shared options, the settings override and table helpers are in
:mod:`lineguard.cli._common`. The stage folders (``models/``, ``dashboards/``
...) only return data; printing and option parsing live here.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from typing import Any

import click

__all__ = ["describe_failure", "main"]


def describe_failure(exc: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit code for a failure the user can fix.

    Parameters
    ----------
    exc : BaseException
        What a command raised.

    Returns
    -------
    (str, int) or None
        The message (what was expected, what arrived, where) and the exit
        code (2: configuration or usage, 1: at run time); ``None`` for an
        exception LineGuard did not anticipate, i.e. a bug.
    """
    from lineguard.errors import LineGuardError

    if isinstance(exc, LineGuardError):
        return str(exc), exc.exit_code
    try:
        from kafka.errors import KafkaError
    except ImportError:  # pragma: no cover - kafka-python is a dependency
        KafkaError = ()
    if isinstance(exc, KafkaError):
        from lineguard.cli._common import settings_for

        servers = settings_for().kafka.bootstrap_servers
        return (
            f"Kafka at {servers} (LINEGUARD_KAFKA_BOOTSTRAP_SERVERS): expected a broker; "
            f"got {type(exc).__name__} ({exc})",
            1,
        )
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}", 1
    return None


#: Command -> module that defines it (the attribute has the command's name).
#: A command's module is imported when that command runs, not before: the
#: site gateway (``lineguard gateway run``, a long-running edge process with
#: a memory budget, docs/gateway.md) then loads neither the model, the
#: dashboard nor the worker commands.
_COMMANDS = {
    "gateway": "lineguard.cli.gateway",
    "train": "lineguard.cli.train",
    "models": "lineguard.cli.models",
    "feedback": "lineguard.cli.feedback",
    "dashboards": "lineguard.cli.dashboards",
    "report": "lineguard.cli.dashboards",
    "evaluate": "lineguard.cli.evaluate",
    "worker": "lineguard.cli.worker",
    "stack": "lineguard.cli.stack",
    "demo": "lineguard.cli.demo",
    "settings": "lineguard.cli.settings",
    "sim": "lineguard.cli.sim",
}


class _Main(click.Group):
    """The top-level group: every failure becomes one line on stderr.

    A failure the user can fix (:class:`~lineguard.errors.LineGuardError`,
    an unreachable broker, a file that cannot be opened) prints
    ``Error: <what was expected; what arrived; where>`` and exits 1, or 2 for
    configuration; anything else is a bug and says so. ``-v`` adds the
    traceback in both cases.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = _COMMANDS.get(cmd_name)
        if module is None:
            return None
        command = getattr(importlib.import_module(module), cmd_name)
        if cmd_name == "gateway":
            # `gateway run` (the live gateway) lives beside the simulators.
            from lineguard.cli.sim import gateway_run

            command.add_command(gateway_run)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:
            # Output piped into `head` and the like: not an error worth a line.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(1)
        except Exception as exc:
            verbose = bool(ctx.params.get("verbose"))
            described = describe_failure(exc)
            if described is None:
                message = (
                    f"unexpected {type(exc).__name__}: {exc} (a bug in LineGuard; "
                    "run with -v for the traceback)"
                )
                code = 1
            else:
                message, code = described
            if verbose:
                traceback.print_exception(exc, file=sys.stderr)
            click.echo(f"Error: {message}", err=True)
            ctx.exit(code)


@click.group(cls=_Main)
@click.option("-v", "--verbose", count=True, help="More log output; tracebacks on failure.")
def main(verbose: int) -> None:
    """LineGuard: catch manufacturing quality problems while they happen."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose and click.get_current_context().invoked_subcommand != "worker":
        # kafka-python logs every failed connection attempt; a command's own
        # one-line error says what failed and where (-v shows the attempts).
        # A long-running worker keeps them: they are its connection history.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
