"""``lineguard models ...``, ``lineguard feedback ...`` and ``lineguard train``'s
lifecycle path: option parsing and printing around :mod:`lineguard.models.lifecycle`.

Registered on the main CLI by :mod:`lineguard.cli`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from lineguard.settings import Settings, get_settings

__all__ = ["feedback", "model_commands", "print_evaluation", "run_training"]

_registry_option = click.option(
    "--registry",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Model registry directory (default: $LINEGUARD_REGISTRY_DIR or ./registry).",
)


def _settings(registry: Path | None) -> Settings:
    settings = get_settings()
    if registry is not None:
        settings = settings.model_copy(update={"registry_dir": registry})
    return settings


def _time_us(text: str | None, what: str) -> int | None:
    from lineguard.models.feedback import InvalidFeedback, parse_time_us

    if text is None:
        return None
    try:
        return parse_time_us(int(text) if text.lstrip("-").isdigit() else text, what)
    except InvalidFeedback as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{what}") from exc


def _iso(us: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(us / 1e6, timezone.utc).isoformat()


def _console() -> Any:
    from rich.console import Console

    return Console(width=120)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_evaluation(report: dict[str, Any]) -> None:
    """The candidate-vs-active evaluation report as a table."""
    from rich.table import Table

    data = report["data"]
    title = (
        f"evaluation on {data['frames']} frames of {data['source']} "
        f"({data['start'][:19]} .. {data['end'][:19]} UTC)"
    )
    table = Table(title=title)
    table.add_column("metric")
    versions = [report["candidate"]] + ([report["active"]] if report.get("active") else [])
    for v in versions:
        role = "candidate" if v is report["candidate"] else "active"
        table.add_column(f"{v['version']} ({role})", justify="right")
    keys = [k for k in versions[0] if k != "version"]
    for key in keys:
        table.add_row(key, *(_fmt(v.get(key)) for v in versions))
    if report.get("agreement_pct") is not None:
        table.add_row("agreement_pct", _fmt(report["agreement_pct"]), "")
    _console().print(table)
    if data.get("labelled_defect_frames") is None:
        click.echo("no labels in this data: only alert rates are comparable")


def _announce_note(error: str | None) -> None:
    if error:
        click.echo(
            f"warning: workers were not notified through Kafka ({error}); they pick the "
            "change up from the registry's ACTIVE file within a second unless they hold a "
            "newer announcement for the line",
            err=True,
        )
    else:
        click.echo("announced on the models topic; running workers switch at their next batch")


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

    settings = _settings(registry)
    reg = Registry(settings.registry_dir)
    defaults = TrainingConfig()
    config = TrainingConfig(
        detector=detector or defaults.detector,
        target_far=target_far if target_far is not None else defaults.target_far,
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
                start_us, end_us = _time_us(start, "start"), _time_us(end, "end")
                if start_us is None or end_us is None:
                    raise click.UsageError("--from-influx needs --start and --end")
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
                    )
                progress.update(reading, completed=end_us - start_us)
            else:
                paths = [file] if isinstance(file, Path) else list(file or [])
                if not paths:
                    raise click.UsageError("give FILE..., or --from-influx --start T --end T")
                from lineguard.ingest.csv_runs import read_run
                from lineguard.models.training import concat_runs

                # Several files: one history of normal runs, oldest first.
                candidate = train_candidate_from_run(
                    reg,
                    concat_runs([read_run(p) for p in paths]),
                    line_id,
                    rows=rows,
                    config=config,
                    activate=activate,
                    step=step,
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
    if m["training"].get("excluded"):
        click.echo(f"left out {len(m['training']['excluded'])} QA-labelled range(s)")
    print_evaluation(candidate.evaluation)
    if candidate.activated:
        if had_active is None:
            reg.activate(line_id, bundle.version, action="activate")
            click.echo(f"{bundle.version} is active (the line's first model)")
        else:
            _, error = activate_and_announce(reg, settings, line_id, bundle.version, "promote")
            click.echo(f"{bundle.version} promoted over {had_active}")
            _announce_note(error)
    else:
        click.echo(
            f"candidate stored; active stays {had_active}. Promote with: "
            f"lineguard models promote {line_id} {bundle.version}"
        )


# -- lineguard models ... -----------------------------------------------------------
@click.command("show")
@click.argument("line")
@click.argument("version", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@_registry_option
def models_show(line: str, version: str | None, as_json: bool, registry: Path | None) -> None:
    """Show a version's manifest (default: the active one) and the line's history."""
    from lineguard.models.registry import Registry, RegistryError

    reg = Registry(_settings(registry).registry_dir)
    try:
        version = version or reg.active_version(line)
        if version is None:
            raise RegistryError(f"line {line!r} has no active version; name one")
        manifest = reg.manifest(line, version)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(manifest, indent=2, sort_keys=True))
        return
    training = manifest["training"]
    role = (
        "active"
        if version == reg.active_version(line)
        else "shadow"
        if version == reg.shadow_version(line)
        else "candidate"
    )
    click.echo(f"{line} {version} ({role}), created {manifest['created_at'][:19]} UTC")
    det = manifest["detector"]
    params = ", ".join(f"{k}={v}" for k, v in det.get("params", {}).items())
    click.echo(f"  detector   {det['name']} (seed {det.get('seed')}) {params}")
    click.echo(f"  sensors    {len(manifest['sensors'])}: {', '.join(manifest['sensors'])}")
    click.echo(
        f"  threshold  {manifest['threshold']:.6g} (target FAR {manifest['target_far']:.2%}), "
        f"debounce {manifest['debounce']['k']} of {manifest['debounce']['n']}"
    )
    click.echo(
        f"  training   {training['rows']} rows from {training['source']}, "
        f"{training['start'][:19]} .. {training['end'][:19]} UTC"
    )
    click.echo(f"  fingerprint {training['fingerprint']}")
    click.echo(
        f"  artifact   {manifest['artifact']['file']} sha256 {manifest['artifact']['sha256']}"
    )
    libs = ", ".join(f"{k} {v}" for k, v in sorted(manifest["libraries"].items()))
    click.echo(f"  libraries  {libs}")
    if manifest.get("evaluation"):
        evaluation = manifest["evaluation"]
        own = {**evaluation["candidate"], "version": version}
        print_evaluation({**evaluation, "candidate": own})
    for entry in reg.history(line)[-8:]:
        click.echo(
            f"  {entry['at'][:19]} {entry['action']:<11} {entry.get('from') or '-'} -> "
            f"{entry.get('to') or '-'}"
        )


@click.command("promote")
@click.argument("line")
@click.argument("version")
@_registry_option
def models_promote(line: str, version: str, registry: Path | None) -> None:
    """Make VERSION the line's active model and tell running workers."""
    from lineguard.models.announce import activate_and_announce
    from lineguard.models.registry import ModelIntegrityError, Registry, RegistryError

    settings = _settings(registry)
    try:
        previous, error = activate_and_announce(
            Registry(settings.registry_dir), settings, line, version, "promote"
        )
    except (RegistryError, ModelIntegrityError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{line}: {previous or 'none'} -> {version} (promote)")
    _announce_note(error)


@click.command("rollback")
@click.argument("line")
@click.option("--to", "target", default=None, help="Version to go back to (default: the previous).")
@_registry_option
def models_rollback(line: str, target: str | None, registry: Path | None) -> None:
    """Serve the line's previously active version again and tell running workers."""
    from lineguard.models.announce import activate_and_announce
    from lineguard.models.registry import ModelIntegrityError, Registry, RegistryError

    settings = _settings(registry)
    reg = Registry(settings.registry_dir)
    try:
        target = target or reg.rollback_target(line)
        previous, error = activate_and_announce(reg, settings, line, target, "rollback")
    except (RegistryError, ModelIntegrityError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{line}: {previous} -> {target} (rollback)")
    _announce_note(error)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


@click.command("diff")
@click.argument("line")
@click.argument("version_a")
@click.argument("version_b")
@_registry_option
def models_diff(line: str, version_a: str, version_b: str, registry: Path | None) -> None:
    """What differs between two versions' manifests (parameters, data, metrics)."""
    from rich.table import Table

    from lineguard.models.registry import Registry, RegistryError

    reg = Registry(_settings(registry).registry_dir)
    try:
        a = _flatten(reg.manifest(line, version_a))
        b = _flatten(reg.manifest(line, version_b))
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from exc
    table = Table(title=f"{line}: {version_a} vs {version_b}")
    for column in ("field", version_a, version_b):
        table.add_column(column, overflow="fold")
    same = 0
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            same += 1
            continue
        table.add_row(key, _fmt(a.get(key)), _fmt(b.get(key)))
    _console().print(table)
    click.echo(f"{same} fields identical")


@click.command("shadow")
@click.argument("line")
@click.argument("version", required=False)
@click.option("--stop", is_flag=True, help="Stop the line's shadow.")
@_registry_option
def models_shadow(line: str, version: str | None, stop: bool, registry: Path | None) -> None:
    """Score candidate VERSION beside the active one on live traffic (no alerts)."""
    from lineguard.models.announce import shadow_and_announce
    from lineguard.models.registry import ModelIntegrityError, Registry, RegistryError

    if stop == (version is not None):
        raise click.UsageError("give VERSION to start a shadow, or --stop to end it")
    settings = _settings(registry)
    try:
        error = shadow_and_announce(Registry(settings.registry_dir), settings, line, version)
    except (RegistryError, ModelIntegrityError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{line}: shadow {'stopped' if stop else version}")
    if error:
        click.echo(f"warning: workers were not notified ({error})", err=True)


@click.command("compare")
@click.argument("line")
@click.option("--a", "version_a", default=None, help="First version (default: the active one).")
@click.option("--b", "version_b", default=None, help="Second version (default: the shadow).")
@click.option("--start", default=None, help="From this time (ISO 8601, UTC if no offset).")
@click.option("--end", default=None, help="Until this time.")
@click.option("--shift-hours", type=float, default=8.0, show_default=True)
@click.option(
    "--shift-origin", type=float, default=6.0, show_default=True, help="Hour a shift starts."
)
@click.option("--json", "as_json", is_flag=True)
@_registry_option
def models_compare(
    line: str,
    version_a: str | None,
    version_b: str | None,
    start: str | None,
    end: str | None,
    shift_hours: float,
    shift_origin: float,
    as_json: bool,
    registry: Path | None,
) -> None:
    """Agreement, alert rate and false-alarm rate per shift of two versions, from InfluxDB."""
    from rich.table import Table

    from lineguard.influx import InfluxV1Client
    from lineguard.models.lifecycle import compare_versions
    from lineguard.models.registry import Registry

    settings = _settings(registry)
    reg = Registry(settings.registry_dir)
    a = version_a or reg.active_version(line)
    b = version_b or reg.shadow_version(line)
    if a is None or b is None:
        raise click.UsageError(f"line {line!r}: name both versions (--a, --b); no active/shadow")
    with InfluxV1Client(settings.influx) as client:
        try:
            report = compare_versions(
                client,
                line,
                a,
                b,
                start_us=_time_us(start, "start"),
                end_us=_time_us(end, "end"),
                shift_hours=shift_hours,
                shift_origin_hour=shift_origin,
            )
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"{line}: {a} vs {b}, {shift_hours:g}-hour shifts (UTC)")
    table.add_column("shift start (UTC)", no_wrap=True)
    for column in (
        "frames",
        "agree %",
        f"alert % {a}",
        f"alert % {b}",
        f"alerts {a}",
        f"alerts {b}",
        f"FAR % {a}",
        f"FAR % {b}",
    ):
        table.add_column(column, justify="right")
    for s in [*report["shifts"], {**report["total"], "start": "total"}]:
        table.add_row(
            s["start"][:16].replace("T", " "),
            str(s["frames"]),
            _fmt(s["agreement_pct"]),
            _fmt(s[a]["alert_rate_pct"]),
            _fmt(s[b]["alert_rate_pct"]),
            str(s[a]["alerts"]),
            str(s[b]["alerts"]),
            _fmt(s[a].get("far_pct")),
            _fmt(s[b].get("far_pct")),
        )
    _console().print(table)
    labels = report["labels"]
    click.echo(
        f"QA labels: {labels['ranges']} range(s), {labels['defect_frames']} defect frames, "
        f"{labels['maintenance_frames']} maintenance frames left out; unlabelled frames count "
        "as normal for the false-alarm rate"
    )


@click.command("evaluate")
@click.argument("line")
@click.argument("version")
@click.option("--against", default=None, help="Version to compare with (default: the active).")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rows", type=int, default=None, help="With --file: skip the first N rows.")
@click.option("--from-influx", is_flag=True, help="Evaluate on archived telemetry.")
@click.option("--start", default=None)
@click.option("--end", default=None)
@_registry_option
def models_evaluate(
    line: str,
    version: str,
    against: str | None,
    file: Path | None,
    rows: int | None,
    from_influx: bool,
    start: str | None,
    end: str | None,
    registry: Path | None,
) -> None:
    """Score the same frames with VERSION and the active (or --against) version."""
    import numpy as np

    from lineguard.influx import InfluxV1Client
    from lineguard.models.candidate import Scorer, evaluate_candidate
    from lineguard.models.feedback import MAINTENANCE, REAL_DEFECT
    from lineguard.models.history import read_history
    from lineguard.models.registry import ModelIntegrityError, Registry, RegistryError

    settings = _settings(registry)
    reg = Registry(settings.registry_dir)
    try:
        candidate = Scorer.from_bundle(reg.load(line, version))
        other = against or reg.active_version(line)
        baseline = Scorer.from_bundle(reg.load(line, other)) if other and other != version else None
        if from_influx:
            start_us, end_us = _time_us(start, "start"), _time_us(end, "end")
            if start_us is None or end_us is None:
                raise click.UsageError("--from-influx needs --start and --end")
            with InfluxV1Client(settings.influx) as client:
                history = read_history(client, line, start_us, end_us)
            run, labels = history.run, history.labels == REAL_DEFECT
            keep = history.labels != MAINTENANCE
            source = f"influx:{settings.influx.database}"
            part = slice(0, len(run))
        elif file is not None:
            from lineguard.ingest.csv_runs import read_run

            run = read_run(file)
            part = slice(rows or 0, len(run))
            labels = run.anomaly[part].astype(bool) if run.anomaly is not None else None
            keep, source = None, file.name
        else:
            raise click.UsageError("give --file FILE or --from-influx --start T --end T")
        report = evaluate_candidate(
            candidate,
            baseline,
            list(run.sensors),
            run.time_us[part],
            np.asarray(run.values[part]),
            labels,
            keep,
            source,
        )
    except (RegistryError, ModelIntegrityError, LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    print_evaluation(report)


model_commands = [
    models_show,
    models_promote,
    models_rollback,
    models_diff,
    models_shadow,
    models_compare,
    models_evaluate,
]


# -- lineguard feedback ... ---------------------------------------------------------
@click.group()
def feedback() -> None:
    """QA labels: real defect, false alarm, maintenance (stored in InfluxDB)."""


def _store_feedback(settings: Settings, item: Any) -> None:
    from lineguard.influx import InfluxV1Client

    with InfluxV1Client(settings.influx) as client:
        client.create_database()
        client.write(item.to_point(), precision="ns")
    click.echo(
        f"{item.line}: {item.label} from {_iso(item.start_us)[:19]} to {_iso(item.end_us)[:19]} "
        "UTC stored"
    )


_label_option = click.option(
    "--label",
    type=click.Choice(["real_defect", "false_alarm", "maintenance"]),
    required=True,
)


@feedback.command("mark")
@click.argument("line")
@_label_option
@click.option("--start", required=True, help="ISO 8601 (UTC if no offset) or microseconds.")
@click.option("--end", required=True)
@click.option("--author", default="", help="Who labelled it.")
@click.option("--note", default="")
def feedback_mark(line: str, label: str, start: str, end: str, author: str, note: str) -> None:
    """Label a time range of LINE."""
    from lineguard.models.feedback import Feedback, InvalidFeedback

    try:
        item = Feedback(
            line, label, _time_us(start, "start"), _time_us(end, "end"), author, note, "cli"
        )
    except InvalidFeedback as exc:
        raise click.ClickException(str(exc)) from exc
    _store_feedback(get_settings(), item)


@feedback.command("alert")
@click.argument("line")
@_label_option
@click.option("--at", "at", required=True, help="Any time inside the alert.")
@click.option("--author", default="")
@click.option("--note", default="")
def feedback_alert(line: str, label: str, at: str, author: str, note: str) -> None:
    """Label the alert of LINE that was on at time --at (its whole run of alerted frames)."""
    from lineguard.influx import InfluxV1Client
    from lineguard.models.feedback import Feedback, alert_range

    settings = get_settings()
    at_us = _time_us(at, "at")
    assert at_us is not None
    with InfluxV1Client(settings.influx) as client:
        try:
            start_us, end_us = alert_range(client, line, at_us)
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc
    _store_feedback(settings, Feedback(line, label, start_us, end_us, author, note, "cli"))


@feedback.command("list")
@click.argument("line")
@click.option("--start", default=None)
@click.option("--end", default=None)
def feedback_list(line: str, start: str | None, end: str | None) -> None:
    """List LINE's QA labels."""
    from lineguard.influx import InfluxV1Client
    from lineguard.models.feedback import read_feedback

    with InfluxV1Client(get_settings().influx) as client:
        items = read_feedback(client, line, _time_us(start, "start"), _time_us(end, "end"))
    if not items:
        click.echo(f"no labels for {line}")
    for f in items:
        click.echo(
            f"{_iso(f.start_us)[:19]} .. {_iso(f.end_us)[:19]}  {f.label:<12} "
            f"{f.source:<6} {f.author} {f.note}"
        )
