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
=================  ==========================================================

Shared options, the settings override and table helpers are in
:mod:`lineguard.cli._common`. The stage folders (``models/``, ``dashboards/``
...) only return data; printing and option parsing live here.
"""

from __future__ import annotations

import logging

import click

from lineguard.cli.dashboards import dashboards, report
from lineguard.cli.demo import demo
from lineguard.cli.evaluate import evaluate
from lineguard.cli.feedback import feedback
from lineguard.cli.gateway import gateway
from lineguard.cli.models import models
from lineguard.cli.stack import stack
from lineguard.cli.train import train
from lineguard.cli.worker import worker

__all__ = ["main"]


@click.group()
@click.option("-v", "--verbose", count=True, help="More log output.")
def main(verbose: int) -> None:
    """LineGuard: catch manufacturing quality problems while they happen."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


_GROUPS = (gateway, train, models, feedback, dashboards, report, evaluate, worker, stack, demo)
for _command in _GROUPS:
    main.add_command(_command)
