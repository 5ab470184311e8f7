"""``lineguard evaluate``: score a labelled folder through the worker's path.

The calculation lives in :mod:`lineguard.models.evaluation` and the HTML in
:mod:`lineguard.models.report`; this module only parses options, prints the
tables and writes the files.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import click

from lineguard.cli._common import noise_window_option

__all__ = ["evaluate", "print_folder_evaluation", "reason_table"]


def reason_table(evaluation: Any) -> Any:
    """Alert events per reason, split by the labels into faults and false alarms.

    What each part of the detector (the multivariate score, each sensor
    check, the unseen-mode report) raised, and how much of it was right. An
    evaluation statistic: the split reads the labels.
    """
    from rich.table import Table

    table = Table(title="alerts by reason")
    for name in ("reason", "alerts", "faults", "false alarms"):
        table.add_column(name, justify="left" if name == "reason" else "right")
    total = {"alerts": 0, "faults": 0, "false_alarms": 0}
    for reason, row in evaluation.by_reason().items():
        table.add_row(reason, str(row["alerts"]), str(row["faults"]), str(row["false_alarms"]))
        total = {k: total[k] + row[k] for k in total}
    table.add_row(
        "total",
        str(total["alerts"]),
        str(total["faults"]),
        str(total["false_alarms"]),
        style="bold",
    )
    return table


def _count_cells(c: Any) -> list[str]:
    """Table cells of one confusion; '-' where a figure has no meaning."""
    from lineguard.models.metrics import format_rate

    rates = c.defined()
    return [
        str(c.tp + c.fp + c.tn + c.fn),
        format_rate(rates["f1"], ".3f"),
        f"{c.far:.1f}",
        format_rate(rates["mar"], ".1f"),
        f"{c.events_detected}/{c.events}",
        str(c.false_alarm_events),
    ]


def print_folder_evaluation(evaluation: Any) -> None:
    """Per-run table, the totals, NAB and event metrics, on the terminal."""
    from rich.console import Console
    from rich.table import Table

    from lineguard.models.metrics import format_rate

    table = Table(title=f"evaluation: {len(evaluation.runs)} runs")
    for name in ("run", "detector", "test rows", "F1", "FAR %", "MAR %", "faults caught"):
        table.add_column(name, justify="left" if name in ("run", "detector") else "right")
    table.add_column("false alarms", justify="right")
    for run in evaluation.runs:
        table.add_row(run.name, run.detector, *_count_cells(run.counts))
    table.add_row("total", "", *_count_cells(evaluation.counts), style="bold")
    # Wide enough for run paths when stdout is a pipe (rich defaults to 80).
    console = Console(width=max(Console().width, 120))
    console.print(table)
    console.print(reason_table(evaluation))
    summary = evaluation.summary()
    delay = summary["median_delay_s"]
    recall = format_rate(summary["event_recall"], ".2f")
    console.print(
        f"NAB (60 s window): standard {summary['nab_standard']}, "
        f"low FP {summary['nab_low_fp']}, low FN {summary['nab_low_fn']}   "
        f"event recall {recall}   "
        f"median detection delay {'-' if delay is None else f'{delay:.0f} s'}   "
        f"({summary['seconds']:.1f} s)"
    )
    for name, why in evaluation.skipped:
        console.print(f"skipped {name}: {why}")
    for name, why in getattr(evaluation, "warnings", []):
        console.print(f"warning {name}: {why}")


@click.command("evaluate")
@click.argument(
    "directories",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=True, path_type=Path),
    metavar="DIR...",
)
@click.option(
    "--train-rows",
    type=click.IntRange(min=1),
    default=None,
    help="Train each run's model on its first N rows (SKAB's protocol: 400).",
)
@click.option(
    "--test-rows",
    type=click.IntRange(min=1),
    default=None,
    help="With --train-rows: cut each run into windows of N + M rows, each trained on its "
    "first N rows and judged on the next M (a rolling-origin backtest of a long run).",
)
# Issue 16: the history protocol, beside SKAB's prefix protocol.
@click.option(
    "--train-dir",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Train one model on every run under this folder, score every run under DIR.",
)
@click.option(
    "--detector",
    default=None,
    help="Detector name, or 'auto' (default: the library default, as `lineguard train`).",
)
@click.option(
    "--predictions",
    "predictions",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for one predictions CSV per run (same relative paths as under DIR).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a self-contained HTML report with a plot per run.",
)
@click.option(
    "--debounce",
    default=None,
    metavar="K/N",
    help="Alert when K of the last N frames exceed (default: the training default, 2/5).",
)
@noise_window_option
@click.option("--json", "as_json", is_flag=True, help="End with the metrics as one JSON line.")
def evaluate(
    directories: tuple[Path, ...],
    train_rows: int | None,
    test_rows: int | None,
    train_dir: Path | None,
    detector: str | None,
    predictions: Path,
    report_path: Path | None,
    debounce: str | None,
    noise_window: int | None,
    as_json: bool,
) -> None:
    """Train and score every CSV run under DIR (one folder or several) through the worker's code.

    Each run is one line: its model is trained on the first --train-rows rows
    exactly as `lineguard train` does, then the whole run is replayed as
    gateway records through the stream worker's processor. Prints SKAB's
    metrics over the test rows (after the training rows) of all runs. A run
    without an 'anomaly' column counts as normal operation (every alert is a
    false alarm) and is named in a warning. With several folders, each
    run's name starts with its folder's name.
    """
    directory: Path | list[Path] = directories[0] if len(directories) == 1 else list(directories)
    from lineguard.detectors.calibration import TRAINING_DEFAULTS
    from lineguard.detectors.catalogue import DETECTOR_NAMES
    from lineguard.models.evaluation import evaluate_folder, evaluate_history, write_predictions
    from lineguard.models.training import TrainingConfig

    # Checked here, not by the option's type: the CLI imports the math lazily.
    if train_rows is not None and train_rows < TRAINING_DEFAULTS.min_rows:
        raise click.BadParameter(
            f"expected at least {TRAINING_DEFAULTS.min_rows} training rows; got {train_rows}",
            param_hint="--train-rows",
        )
    if detector is not None and detector not in DETECTOR_NAMES:
        raise click.BadParameter(
            f"expected one of {list(DETECTOR_NAMES)}; got {detector!r}", param_hint="--detector"
        )
    options: dict[str, Any] = {} if detector is None else {"detector": detector}
    if noise_window is not None:
        options["noise_window"] = noise_window
    if debounce is not None:
        try:
            k, n = (int(part) for part in debounce.split("/"))
            options["debounce"] = (k, n)
            TrainingConfig(**options)  # validates 1 <= k <= n
        except ValueError as exc:
            raise click.BadParameter(
                f"expected K/N with 1 <= K <= N, e.g. 3/5; got {debounce!r}",
                param_hint="--debounce",
            ) from exc
    config = TrainingConfig(**options)
    with warnings.catch_warnings():
        # MinCovDet's convergence chatter on short, quantized training windows.
        warnings.filterwarnings("ignore", message="Determinant has increased", module="sklearn")
        if (train_rows is None) == (train_dir is None):
            raise click.UsageError("give --train-rows N (prefix protocol) or --train-dir DIR")
        if test_rows is not None and train_rows is None:
            raise click.UsageError(
                "--test-rows cuts runs for the prefix protocol: give --train-rows"
            )
        try:
            if train_dir is not None:
                result = evaluate_history(train_dir, directory, config)
            else:
                result = evaluate_folder(directory, train_rows, config, test_rows=test_rows)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
    if not result.runs:
        need = (
            f"longer than {train_rows} rows"
            if test_rows is None
            else (f"at least {train_rows + test_rows} rows")
        )
        raise click.ClickException(
            f"no run to evaluate under {' '.join(map(str, directories))} (expected "
            f"';'-separated CSVs with a 'datetime' first column, {need})"
        )
    write_predictions(result, predictions)
    print_folder_evaluation(result)
    click.echo(f"predictions: {predictions}")
    if report_path is not None:
        from lineguard.models.report import write_report

        write_report(result, report_path)
        click.echo(f"report: {report_path}")
    if as_json:
        summary = result.summary()
        keys = ("f1", "far", "mar", "nab_standard", "event_recall", "false_alarm_events")
        line: dict[str, Any] = {k: summary[k] for k in keys}
        line["median_delay_s"] = summary["median_delay_s"]
        line["runs"] = summary["runs"]
        line |= {
            k: summary[k]
            for k in ("nab_low_fp", "nab_low_fn", "events", "events_detected", "test_rows")
        }
        line["detector"] = config.detector
        line["debounce"] = "{}/{}".format(*config.debounce)
        line["seconds"] = summary["seconds"]
        line["reasons"] = summary["reasons"]
        click.echo(json.dumps(line))
