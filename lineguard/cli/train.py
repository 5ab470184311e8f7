"""``lineguard train``: a CSV run or InfluxDB history -> a new model version and
its evaluation against the active one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from lineguard.cli._common import noise_window_option, registry_option, settings_for, time_range
from lineguard.cli.models import announce_note, print_evaluation

__all__ = ["run_training", "train"]


@click.command()
# Several FILEs: one history of normal runs of the line, oldest first.
@click.argument(
    "file", nargs=-1, required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--line", "line_id", required=True, help="Production line id.")
@click.option("--rows", type=int, default=None, help="Train on the first N rows only.")
@click.option("--detector", default=None, help="Detector name (default: the library default).")
@click.option(
    "--target-far",
    type=float,
    default=None,
    help="Target false-alarm rate on normal frames, e.g. 0.005.",
)
@noise_window_option
@click.option(
    "--activate/--no-activate",
    default=None,
    help="Make the new version the one workers serve (default: only a line's first model).",
)
@click.option(
    "--from-influx", is_flag=True, help="Train on the line's archived telemetry in InfluxDB."
)
@click.option("--start", default=None, help="With --from-influx: from (ISO 8601, UTC).")
@click.option("--end", default=None, help="With --from-influx: until (inclusive).")
@click.option(
    "--sensors-change",
    is_flag=True,
    help="The line's sensor set changes: train even though the data lacks sensors of the "
    "active model (recorded in the manifest).",
)
@registry_option
def train(
    file: tuple[Path, ...],
    line_id: str,
    rows: int | None,
    detector: str | None,
    target_far: float | None,
    noise_window: int | None,
    activate: bool | None,
    from_influx: bool,
    start: str | None,
    end: str | None,
    sensors_change: bool,
    registry: Path | None,
) -> None:
    """Train a line's model on normal rows of FILE... (one or more runs, taken as
    one history, oldest first; or of InfluxDB history), store a new version and
    print its evaluation against the active version."""
    run_training(
        file=file,
        line_id=line_id,
        rows=rows,
        detector=detector,
        target_far=target_far,
        noise_window=noise_window,
        activate=activate,
        registry=registry,
        from_influx=from_influx,
        start=start,
        end=end,
        sensors_change=sensors_change,
    )


def run_training(
    *,
    file: Path | Sequence[Path] | None,
    line_id: str,
    rows: int | None,
    detector: str | None,
    target_far: float | None,
    activate: bool | None,
    registry: Path | None,
    from_influx: bool,
    start: str | None,
    end: str | None,
    sensors_change: bool = False,
    noise_window: int | None = None,
) -> None:
    """``lineguard train``: file or InfluxDB history -> candidate + evaluation report."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from lineguard.influx import InfluxV1Client
    from lineguard.models.announce import activate_and_announce
    from lineguard.models.lifecycle import (
        train_candidate_from_influx,
        train_candidate_from_run,
    )
    from lineguard.models.registry import ModelIntegrityError, Registry, RegistryError
    from lineguard.models.training import TrainingConfig

    settings = settings_for(registry)
    reg = Registry(settings.registry_dir)
    defaults = TrainingConfig()
    config = TrainingConfig(
        detector=detector or defaults.detector,
        target_far=target_far if target_far is not None else defaults.target_far,
        noise_window=noise_window if noise_window is not None else defaults.noise_window,
    )
    had_active = reg.active_version(line_id)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task("training", total=1.0)

            def step(text: str, fraction: float) -> None:
                progress.update(task, description=text, completed=fraction)

            if from_influx:
                if file:
                    raise click.UsageError("give FILE or --from-influx, not both")
                start_us, end_us = time_range(start, end, required=True)
                assert start_us is not None and end_us is not None
                reading = progress.add_task("reading lineguard_telemetry", total=end_us - start_us)

                def progress_read(reached_us: int, n_rows: int) -> None:
                    progress.update(
                        reading,
                        completed=reached_us - start_us,
                        description=f"reading lineguard_telemetry ({n_rows} rows)",
                    )

                with InfluxV1Client(settings.influx) as client:
                    candidate = train_candidate_from_influx(
                        reg,
                        client,
                        line_id,
                        start_us,
                        end_us,
                        config=config,
                        activate=activate,
                        progress=progress_read,
                        step=step,
                        sensors_change=sensors_change,
                    )
                progress.update(reading, completed=end_us - start_us)
            else:
                paths = [file] if isinstance(file, Path) else list(file or [])
                if not paths:
                    raise click.UsageError("give FILE..., or --from-influx --start T --end T")
                from lineguard.ingest.csv_runs import read_run
                from lineguard.models.training import concat_runs

                # Several files: one history of normal runs, oldest first.
                recorded = [read_run(p) for p in paths]
                for run in recorded:
                    for warning in run.warnings:
                        click.echo(f"warning: {warning}", err=True)
                candidate = train_candidate_from_run(
                    reg,
                    concat_runs(recorded),
                    line_id,
                    rows=rows,
                    config=config,
                    activate=activate,
                    step=step,
                    sensors_change=sensors_change,
                )
    except (ValueError, LookupError, ModelIntegrityError, RegistryError) as exc:
        raise click.ClickException(str(exc)) from exc
    bundle = candidate.bundle
    m = bundle.manifest
    click.echo(
        f"trained {line_id} {bundle.version}: detector {m['detector']['name']}, "
        f"{m['training']['rows']} rows from {m['training']['source']} "
        f"({m['training']['start'][:19]} .. {m['training']['end'][:19]} UTC), "
        f"threshold {bundle.threshold:.4g} (target false-alarm rate {m['target_far']:.2%}), "
        f"fingerprint {m['training']['fingerprint'][:12]}"
    )
    calibration = m.get("calibration", {})
    if calibration.get("calibration") == "out_of_fold":
        click.echo(
            f"threshold calibrated out of fold: {calibration['calibration_folds']} folds of "
            "whole runs, each scored by a model fitted on the others"
        )
    for part in m["training"].get("set_aside", []):
        click.echo(
            f"left out of the model: {part['rows']} rows ({part['start'][:19]} .. "
            f"{part['end'][:19]} UTC) that the threshold of the rest of the history flags "
            "far more often than the target; look there for a fault"
        )
    if calibration.get("noise_window"):
        click.echo(f"noise check on ({calibration['noise_window']} rows)")
    if m["training"].get("excluded"):
        click.echo(f"left out {len(m['training']['excluded'])} QA-labelled range(s)")
    change = m["training"].get("sensor_change")
    if change:
        removed = ", ".join(change["removed"]) or "none"
        added = ", ".join(change["added"]) or "none"
        click.echo(f"sensor set changed from {change['from']}: removed {removed}, added {added}")
    print_evaluation(candidate.evaluation)
    if candidate.activated:
        if had_active is None:
            reg.activate(line_id, bundle.version, action="activate")
            click.echo(f"{bundle.version} is active (the line's first model)")
        else:
            _, error = activate_and_announce(reg, settings, line_id, bundle.version, "promote")
            click.echo(f"{bundle.version} promoted over {had_active}")
            announce_note(error)
    else:
        click.echo(
            f"candidate stored; active stays {had_active}. Promote with: "
            f"lineguard models promote {line_id} {bundle.version}"
        )
