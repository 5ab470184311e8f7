"""``lineguard models ...``: inspect the registry, promote, roll back, shadow,
compare and evaluate versions (around :mod:`lineguard.models.lifecycle`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lineguard.cli._common import console, fmt, registry_option, settings_for, time_range

__all__ = ["announce_note", "models", "print_evaluation"]


@click.group()
def models() -> None:
    """Inspect the model registry."""


def model_rows(registry: Any) -> list[dict[str, Any]]:
    """One summary per stored version, for ``models list`` and its ``--json``.

    ``role`` is ``active`` (what workers serve), ``shadow`` (scored beside
    it, no alerts) or ``candidate`` (stored, not served).
    """
    rows = []
    shadows: dict[str, str | None] = {}
    for m in registry.list_models():
        line = m["line_id"]
        if line not in shadows:
            shadows[line] = registry.shadow_version(line)
        role = (
            "active" if m["active"] else "shadow" if shadows[line] == m["version"] else "candidate"
        )
        rows.append(
            {
                "line": line,
                "version": m["version"],
                "role": role,
                "detector": m["detector"]["name"],
                "sensors": list(m["sensors"]),
                "rows": m["training"]["rows"],
                "threshold": m["threshold"],
                "target_far": m["target_far"],
                "created_at": m["created_at"],
            }
        )
    return rows


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, for scripts.")
@registry_option
def models_list(as_json: bool, registry: Path | None) -> None:
    """List every line's model versions."""
    from rich import box
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    from lineguard.models.registry import Registry

    settings = settings_for(registry)
    reg = Registry(settings.registry_dir)
    rows = model_rows(reg)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no models in {settings.registry_dir}")
        return
    # Line ids and versions are what users type next (models promote LINE
    # VERSION), so no cell is ever abbreviated: when the terminal is too
    # narrow (80 columns when piped), the least useful columns are left out.
    columns: list[tuple[str, Any]] = [
        ("line", lambda r: r["line"]),
        ("version", lambda r: r["version"]),
        ("role", lambda r: r["role"]),
        ("detector", lambda r: r["detector"]),
        ("sensors", lambda r: str(len(r["sensors"]))),
        ("rows", lambda r: str(r["rows"])),
        ("threshold", lambda r: f"{r['threshold']:.4g}"),
        ("FAR", lambda r: f"{r['target_far']:.2%}"),
        ("created (UTC)", lambda r: r["created_at"][:16].replace("T", " ")),
    ]
    out = Console()

    def natural(table: Any) -> int:  # width the table needs without squeezing
        return Measurement.get(out, out.options.update_width(10_000), table).maximum

    click.echo(f"models in {settings.registry_dir}")
    for keep in range(len(columns), 2, -1):
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for name, _ in columns[:keep]:
            numeric = name in ("sensors", "rows", "threshold", "FAR")
            table.add_column(name, no_wrap=True, justify="right" if numeric else "left")
        for r in rows:
            table.add_row(*(cell(r) for _, cell in columns[:keep]))
        if natural(table) <= out.width or keep == 3:
            break
    if natural(table) > out.width:  # not even line, version and role fit
        for r in rows:
            click.echo(f"{r['line']} {r['version']} {r['role']}")
        return
    out.print(table)
    if keep < len(columns):
        left_out = ", ".join(name for name, _ in columns[keep:])
        click.echo(f"({out.width} columns: {left_out} left out; --json has everything)")


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
    if not any(v.get("imputed_sensors") for v in versions):
        keys = [k for k in keys if k != "imputed_sensors"]  # a row only when it says something
    for key in keys:
        table.add_row(key, *(fmt(v.get(key)) for v in versions))
    if report.get("agreement_pct") is not None:
        table.add_row("agreement_pct", fmt(report["agreement_pct"]), "")
    console().print(table)
    if data.get("labelled_defect_frames") is None:
        click.echo("no labels in this data: only alert rates are comparable")
    for v in versions:
        if v.get("imputed_sensors"):
            click.echo(
                f"warning: {v['version']} imputed {v['imputed_sensors']} on every frame (absent "
                "from the data): its rates describe a line without those sensors",
                err=True,
            )


def announce_note(error: str | None) -> None:
    if error:
        click.echo(
            f"warning: workers were not notified through Kafka ({error}); they pick the "
            "change up from the registry's ACTIVE file within a second unless they hold a "
            "newer announcement for the line",
            err=True,
        )
    else:
        click.echo("announced on the models topic; running workers switch at their next batch")


@models.command("show")
@click.argument("line")
@click.argument("version", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@registry_option
def models_show(line: str, version: str | None, as_json: bool, registry: Path | None) -> None:
    """Show a version's manifest (default: the active one) and the line's history."""
    from lineguard.models.registry import Registry, RegistryError

    reg = Registry(settings_for(registry).registry_dir)
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


@models.command("promote")
@click.argument("line")
@click.argument("version")
@registry_option
def models_promote(line: str, version: str, registry: Path | None) -> None:
    """Make VERSION the line's active model and tell running workers."""
    from lineguard.models.announce import activate_and_announce
    from lineguard.models.registry import ModelIntegrityError, Registry, RegistryError

    settings = settings_for(registry)
    reg = Registry(settings.registry_dir)
    if reg.active_version(line) == version:
        # Nothing to change: no history entry, no announcement.
        click.echo(f"{line}: {version} is already the active version; nothing changed")
        return
    try:
        previous, error = activate_and_announce(reg, settings, line, version, "promote")
    except (RegistryError, ModelIntegrityError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{line}: {previous or 'none'} -> {version} (promote)")
    announce_note(error)


@models.command("rollback")
@click.argument("line")
@click.option("--to", "target", default=None, help="Version to go back to (default: the previous).")
@registry_option
def models_rollback(line: str, target: str | None, registry: Path | None) -> None:
    """Serve the line's previously active version again and tell running workers."""
    from lineguard.models.announce import activate_and_announce
    from lineguard.models.registry import ModelIntegrityError, Registry, RegistryError

    settings = settings_for(registry)
    reg = Registry(settings.registry_dir)
    try:
        target = target or reg.rollback_target(line)
        previous, error = activate_and_announce(reg, settings, line, target, "rollback")
    except (RegistryError, ModelIntegrityError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{line}: {previous} -> {target} (rollback)")
    announce_note(error)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


@models.command("diff")
@click.argument("line")
@click.argument("version_a")
@click.argument("version_b")
@registry_option
def models_diff(line: str, version_a: str, version_b: str, registry: Path | None) -> None:
    """What differs between two versions' manifests (parameters, data, metrics)."""
    from rich.table import Table

    from lineguard.models.registry import Registry, RegistryError

    reg = Registry(settings_for(registry).registry_dir)
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
        table.add_row(key, fmt(a.get(key)), fmt(b.get(key)))
    console().print(table)
    click.echo(f"{same} fields identical")


@models.command("shadow")
@click.argument("line")
@click.argument("version", required=False)
@click.option("--stop", is_flag=True, help="Stop the line's shadow.")
@registry_option
def models_shadow(line: str, version: str | None, stop: bool, registry: Path | None) -> None:
    """Score candidate VERSION beside the active one on live traffic (no alerts)."""
    from lineguard.models.announce import shadow_and_announce
    from lineguard.models.registry import ModelIntegrityError, Registry, RegistryError

    if stop == (version is not None):
        raise click.UsageError("give VERSION to start a shadow, or --stop to end it")
    settings = settings_for(registry)
    reg = Registry(settings.registry_dir)
    running = reg.shadow_version(line)
    if running == version:  # --stop with none running, or the same version again
        state = f"{version} is already its shadow" if version else "no shadow is running"
        click.echo(f"{line}: {state}; nothing changed")
        return
    try:
        error = shadow_and_announce(reg, settings, line, version)
    except (RegistryError, ModelIntegrityError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{line}: shadow {f'{running} stopped' if stop else version}")
    if error:
        click.echo(f"warning: workers were not notified ({error})", err=True)


@models.command("compare")
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
@registry_option
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
    from lineguard.models.lifecycle import compare_versions, sensors_without_values
    from lineguard.models.registry import Registry

    settings = settings_for(registry)
    reg = Registry(settings.registry_dir)
    a = version_a or reg.active_version(line)
    b = version_b or reg.shadow_version(line)
    if a is None or b is None:
        raise click.UsageError(f"line {line!r}: name both versions (--a, --b); no active/shadow")
    start_us, end_us = time_range(start, end)
    with InfluxV1Client(settings.influx) as client:
        try:
            report = compare_versions(
                client,
                line,
                a,
                b,
                start_us=start_us,
                end_us=end_us,
                shift_hours=shift_hours,
                shift_origin_hour=shift_origin,
            )
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc
        # Live scores of a version whose sensor never arrived were computed
        # with it imputed on every frame: the comparison says so.
        window = report["window"]
        report["imputed_sensors"] = {
            v: sensors_without_values(
                client, line, reg.manifest(line, v)["sensors"], window["start_us"], window["end_us"]
            )
            for v in dict.fromkeys((a, b))
        }
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
            fmt(s["agreement_pct"]),
            fmt(s[a]["alert_rate_pct"]),
            fmt(s[b]["alert_rate_pct"]),
            str(s[a]["alerts"]),
            str(s[b]["alerts"]),
            fmt(s[a].get("far_pct")),
            fmt(s[b].get("far_pct")),
        )
    console().print(table)
    labels = report["labels"]
    click.echo(
        f"QA labels: {labels['ranges']} range(s), {labels['defect_frames']} defect frames, "
        f"{labels['maintenance_frames']} maintenance frames left out; unlabelled frames count "
        "as normal for the false-alarm rate"
    )
    for v, absent in report["imputed_sensors"].items():
        if absent is None:
            click.echo(f"no archived telemetry in the window: cannot check {v}'s sensors", err=True)
        elif absent:
            click.echo(
                f"warning: {v}'s sensors {', '.join(absent)} have no reading in the window: "
                "its scores were computed with them imputed on every frame",
                err=True,
            )


@models.command("evaluate")
@click.argument("line")
@click.argument("version")
@click.option("--against", default=None, help="Version to compare with (default: the active).")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--rows", type=int, default=None, help="With --file: skip the first N rows.")
@click.option("--from-influx", is_flag=True, help="Evaluate on archived telemetry.")
@click.option("--start", default=None)
@click.option("--end", default=None)
@click.option(
    "--allow-missing-sensors",
    is_flag=True,
    help="Evaluate even when the data lacks a model's sensor (imputed; marked in the report).",
)
@registry_option
def models_evaluate(
    line: str,
    version: str,
    against: str | None,
    file: Path | None,
    rows: int | None,
    from_influx: bool,
    start: str | None,
    end: str | None,
    allow_missing_sensors: bool,
    registry: Path | None,
) -> None:
    """Score the same frames with VERSION and the active (or --against) version."""
    import numpy as np

    from lineguard.errors import MissingSensorsError
    from lineguard.influx import InfluxV1Client
    from lineguard.models.candidate import Scorer, absent_sensors, evaluate_candidate
    from lineguard.models.feedback import MAINTENANCE, REAL_DEFECT
    from lineguard.models.history import read_history
    from lineguard.models.registry import ModelIntegrityError, Registry, RegistryError

    settings = settings_for(registry)
    reg = Registry(settings.registry_dir)
    try:
        candidate = Scorer.from_bundle(reg.load(line, version))
        other = against or reg.active_version(line)
        baseline = Scorer.from_bundle(reg.load(line, other)) if other and other != version else None
        if from_influx:
            start_us, end_us = time_range(start, end, required=True)
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
        if not allow_missing_sensors:
            for scorer in (s for s in (candidate, baseline) if s is not None):
                absent = absent_sensors(scorer.sensors, list(run.sensors), run.values[part])
                if absent:
                    raise MissingSensorsError(
                        f"{source}: expected every sensor of {line} {scorer.name}; missing "
                        f"{', '.join(absent)} (no column or no reading), which scoring would "
                        "impute on every frame. Use --allow-missing-sensors to evaluate anyway",
                        tuple(absent),
                    )
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
