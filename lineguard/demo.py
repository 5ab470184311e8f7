"""``lineguard demo``: the whole pipeline on one machine, in about a minute.

It starts the local broker and InfluxDB, trains one model per recorded SKAB
run (each run plays one production line), starts a scoring worker and an
archiving worker as separate processes, replays the lines at once through the
edge gateway, shows a live view read back from InfluxDB and the alerts topic,
and ends with a table comparing the alerts with the labelled anomalies.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from lineguard.influx import InfluxV1Client
from lineguard.ingest.csv_runs import RecordedRun, read_run
from lineguard.models.metrics import AlertScore, score_alerts
from lineguard.settings import Settings
from lineguard.stream.processor import RESULT_MEASUREMENT

__all__ = ["DemoLine", "WorkerProcess", "default_data_dir", "line_id_for", "run_demo"]


def default_data_dir() -> Path:
    """The SKAB sample runs shipped with the package (``lineguard.samples``).

    They are package data, installed from ``examples/data``: an editable
    install maps the package to that folder, a wheel carries a copy, so the
    demo finds its runs either way.
    """
    spec = importlib.util.find_spec("lineguard.samples")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "skab"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "the bundled sample runs (package lineguard.samples, folder skab/) are not "
        f"installed; looked in {locations}. Reinstall lineguard, or pass --data FOLDER."
    )


def line_id_for(path: Path, root: Path) -> str:
    """A line id from a run's path, e.g. ``valve1/0.csv`` -> ``valve1-0``."""
    relative = path.relative_to(root).with_suffix("")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "-".join(relative.parts)).strip("-")[:64]


@dataclass
class DemoLine:
    """One replayed line and what the demo saw of it."""

    line_id: str
    run: RecordedRun
    version: str = ""
    threshold: float = float("nan")
    sent: int = 0
    scored: int = 0
    last_score: float = float("nan")
    alerting: bool = False
    alerts_raised: int = 0
    score: AlertScore | None = None
    done: bool = False
    error: str = ""
    times_replayed: int = field(default=0)


class WorkerProcess:
    """A ``lineguard worker`` subprocess with its log in a file."""

    def __init__(self, role: str, env: dict[str, str], log_path: Path) -> None:
        self.role = role
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lineguard.cli", "worker", "--role", role],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return int(self.process.returncode)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the worker's log."""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def _consume_alerts(settings: Settings, lines: dict[str, DemoLine], stop: threading.Event) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.topics.alerts,
        group_id=None,
        auto_offset_reset="earliest",
        consumer_timeout_ms=500,
        **settings.kafka.kafka_python_config(),
    )
    try:
        # A batch's points are stored before its alerts are sent, so when the
        # demo sees every frame scored the last alerts may still be on their
        # way: after ``stop`` (set once the workers have stopped) keep reading
        # until the topic has been quiet for ``consumer_timeout_ms``.
        while True:
            for message in consumer:
                alert = orjson.loads(message.value)
                line = lines.get(alert.get("line"))
                if line is not None and alert.get("state") == "raised":
                    line.alerts_raised += 1
            if stop.is_set():
                break
    finally:
        consumer.close()


def _refresh(client: InfluxV1Client, lines: dict[str, DemoLine]) -> None:
    rows = client.query(
        f'SELECT count("score") AS n, last("score") AS score, last("anomaly") AS anomaly '
        f'FROM "{RESULT_MEASUREMENT}" GROUP BY "line"'
    )
    for row in rows:
        line = lines.get(row.get("line", ""))
        if line is not None:
            line.scored = int(row["n"])
            line.last_score = float(row["score"])
            line.alerting = bool(row["anomaly"])


def _view(lines: dict[str, DemoLine], elapsed: float) -> object:
    from rich.table import Table

    table = Table(title=f"LineGuard live view  ({elapsed:5.1f} s)")
    for column in (
        "line",
        "model",
        "status",
        "frames sent",
        "frames scored",
        "score",
        "threshold",
        "alerts raised",
    ):
        table.add_column(column, justify="right" if column != "line" else "left")
    for line in lines.values():
        status = "[bold red]ALERT[/]" if line.alerting else "[green]normal[/]"
        if line.error:
            status = "[red]error[/]"
        table.add_row(
            line.line_id,
            line.version,
            status,
            str(line.sent),
            str(line.scored),
            f"{line.last_score:.3g}",
            f"{line.threshold:.3g}",
            str(line.alerts_raised),
        )
    return table


def _evaluate(client: InfluxV1Client, line: DemoLine, train_rows: int) -> AlertScore | None:
    """Alerts stored in InfluxDB for the run's test part, against its labels."""
    if line.run.anomaly is None:
        return None
    rows = client.query(
        f'SELECT "anomaly" FROM "{RESULT_MEASUREMENT}" WHERE "line" = \'{line.line_id}\' '
        f"AND \"model_version\" = '{line.version}'",
        epoch="u",
    )
    flagged = {int(r["time"]) for r in rows if r["anomaly"]}
    test = slice(train_rows, len(line.run))
    predictions = np.array([t in flagged for t in line.run.time_us[test].tolist()])
    return score_alerts(line.run.anomaly[test], predictions)


#: The demo's default source; see :func:`run_demo`.
DEFAULT_SOURCE = "opcua"


def _live_source(
    source: str,
    lines: dict[str, DemoLine],
    files: list[Path],
    root: Path,
    speed: float,
    follow: bool,
    settings: Settings,
    workdir: Path,
    stop: threading.Event,
) -> None:
    """Play the runs through a live source simulator into a live gateway."""
    from lineguard.ingest.gateway_config import parse_config
    from lineguard.ingest.live import LiveGateway
    from lineguard.ingest.sim.opcua import line_name
    from lineguard.stack import MosquittoServer, free_port

    paths = [p for p in files if line_id_for(p, root) in lines]
    broker = MosquittoServer().start() if source == "sparkplug" else None
    port = broker.port if broker else free_port()
    # Played faster than real time, a source's publishing delay is `speed`
    # times longer in source time: wait that long before closing a period.
    lateness = max(1.0, speed * 0.2)
    text = [
        f'site = "{settings.site}"\ngateway_id = "gw-demo-{source}"\n'
        f'topic = "{settings.topics.telemetry}"\nstate_dir = "{workdir / "gateway"}"\n'
        f'tick_s = 0.1\n[kafka]\nbootstrap_servers = "{settings.kafka.bootstrap_servers}"\n'
    ]
    if source == "opcua":
        text.append(
            f'[[sources]]\ntype = "opcua"\nname = "sim"\n'
            f'endpoint = "opc.tcp://127.0.0.1:{port}/lineguard/"\n'
            "publishing_interval_s = 0.05\nsampling_interval_s = 0.0\nqueue_size = 1000\n"
        )
    else:
        text.append(
            f'[[sources]]\ntype = "sparkplug"\nname = "sim"\nhost = "127.0.0.1"\n'
            f'port = {port}\ngroup_id = "LineGuard"\nedge_node = "sim"\n'
        )
    n_tags = 0
    for path in paths:
        line, run = line_id_for(path, root), lines[line_id_for(path, root)].run
        text.append(
            f'[lines."{line}"]\nlateness_s = {lateness}\nstaleness_s = {lateness + 5}\n'
            'frames = "on_update"\n'
        )
        for sensor in run.sensors:
            tag = (
                f'tag = "ns=2;s={line_name(path)}.{sensor}"'
                if source == "opcua"
                else f'device = "{line_name(path)}"\ntag = "{sensor}"'
            )
            text.append(f'[[sensors]]\nline = "{line}"\nname = "{sensor}"\nsource = "sim"\n{tag}\n')
            n_tags += 1
    gateway = LiveGateway(parse_config("".join(text), "demo-gateway.toml")).start()
    args = [sys.executable, "-m", "lineguard.cli", "sim", source, *map(str, paths)]
    args += ["--port", str(port), "--speed", str(speed)]
    args += ["--loop", "--retime"] if follow else []
    args += ["--wait-for-items", str(n_tags)] if source == "opcua" else ["--start-after", "3"]
    log_file = (workdir / f"sim-{source}.log").open("wb")
    sim = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT)
    played_at: float | None = None
    try:
        while not stop.is_set():
            gateway.tick()
            for line in lines.values():
                line.sent = gateway.states[line.line_id].counters["frames"]
            if (
                played_at is None
                and b"all rows played" in (workdir / f"sim-{source}.log").read_bytes()
            ):
                played_at = time.monotonic()
            complete = all(ln.sent >= len(ln.run) for ln in lines.values())
            if (
                not follow
                and played_at is not None
                and (complete or time.monotonic() - played_at > 30 + lateness)
            ):
                break
            time.sleep(0.1)
    except Exception as exc:  # shown in the view, not swallowed
        for line in lines.values():
            line.error = str(exc)
    finally:
        for reader in gateway.readers:
            reader.stop()
        if gateway._forward is not None:
            gateway._forward.drain(30.0)
        sim.terminate()
        sim.wait(15)
        log_file.close()
        if broker is not None:
            broker.stop()
        summary = gateway.snapshot()
        for line in lines.values():
            line.sent = summary["lines"][line.line_id]["frames"]
            line.times_replayed += 1
            line.done = True
        logging.getLogger(__name__).info("demo gateway: %s", summary)


def run_demo(
    *,
    data_dir: Path | None = None,
    speed: float = 60.0,
    follow: bool = False,
    max_lines: int = 5,
    train_rows: int = 400,
    timeout_s: float = 300.0,
    source: str = DEFAULT_SOURCE,
) -> int:
    """Run the demo; return the process exit code.

    ``source`` is how the recorded runs reach the gateway: ``opcua`` (the
    default: an asyncua server plays them as live tags and ``gateway run``'s
    code subscribes, so the demo shows the path a plant uses, and needs no
    server beyond Python), ``sparkplug`` (an edge node publishing into a
    mosquitto broker) or ``replay`` (the CSV replay, straight to Kafka).
    """
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from lineguard.ingest.gateway import SequenceCounter, make_producer, replay
    from lineguard.models.registry import Registry
    from lineguard.models.training import train_line_model
    from lineguard.stack import LocalStack
    from lineguard.stream.worker import ensure_topics

    console = Console()
    root = Path(data_dir) if data_dir else default_data_dir()
    files = sorted(root.rglob("*.csv"), key=lambda p: (p.parent.name, p.stem.zfill(4)))
    runs = [(line_id_for(p, root), read_run(p)) for p in files]
    runs = [(name, run) for name, run in runs if run.anomaly is not None][:max_lines]
    if not runs:
        console.print(f"[red]no labelled SKAB-layout runs under {root}[/]")
        return 2

    console.print("[bold]1/5[/] starting a Kafka-protocol broker (Tansu) and InfluxDB ...")
    with LocalStack() as local:
        env = {**os.environ, **local.env()}
        registry_dir = Path(local.workdir) / "registry"
        env["LINEGUARD_REGISTRY_DIR"] = str(registry_dir)
        os.environ.update(local.env())
        settings = Settings(registry_dir=registry_dir)
        console.print(f"      broker {local.kafka_bootstrap}, InfluxDB {local.influx_url}")

        console.print(f"[bold]2/5[/] training one model per line on its first {train_rows} rows")
        registry = Registry(registry_dir)
        lines: dict[str, DemoLine] = {}
        for name, run in runs:
            bundle = train_line_model(registry, run, name, rows=train_rows)
            lines[name] = DemoLine(name, run, bundle.version, bundle.threshold)
            console.print(
                f"      {name}: {bundle.version}, {len(run.sensors)} sensors, "
                f"threshold {bundle.threshold:.3g}"
            )

        console.print("[bold]3/5[/] starting the scoring worker and the archiving worker")
        ensure_topics(settings)
        workdir = Path(local.workdir)
        workers = [
            WorkerProcess("score", env, workdir / "worker-score.log"),
            WorkerProcess("archive", env, workdir / "worker-archive.log"),
        ]
        stop = threading.Event()
        workers_stopped = threading.Event()
        alert_thread = threading.Thread(
            target=_consume_alerts, args=(settings, lines, workers_stopped), daemon=True
        )
        alert_thread.start()
        producer = make_producer(settings.kafka)

        def replay_line(line: DemoLine) -> None:
            sequence = SequenceCounter()
            try:
                while True:
                    stats = replay(
                        line.run,
                        producer=producer,
                        topic=settings.topics.telemetry,
                        site=settings.site,
                        line=line.line_id,
                        gateway_id=f"gw-{line.line_id}"[:64],
                        sequence=sequence,
                        speed=speed,
                        retime=follow,
                        should_stop=stop.is_set,
                    )
                    line.sent += stats.frames
                    line.times_replayed += 1
                    if not follow or stop.is_set():
                        break
            except Exception as exc:  # shown in the view, not swallowed
                line.error = str(exc)
            finally:
                line.done = True

        console.print(
            f"[bold]4/5[/] {'replaying' if source == 'replay' else f'playing through {source}'} "
            f"{len(lines)} lines at {speed:g}x " + ("until Ctrl-C" if follow else "(finite replay)")
        )
        if source == "replay":
            threads = [
                threading.Thread(target=replay_line, args=(ln,), daemon=True)
                for ln in lines.values()
            ]
        else:
            threads = [
                threading.Thread(
                    target=_live_source,
                    args=(source, lines, files, root, speed, follow, settings, workdir, stop),
                    daemon=True,
                )
            ]
        for thread in threads:
            thread.start()
        interrupted = False
        client = InfluxV1Client(settings.influx)
        started = time.monotonic()
        try:
            with Live(_view(lines, 0), console=console, refresh_per_second=4) as live:
                while True:
                    time.sleep(0.5)
                    # The worker may not have created the database yet.
                    with contextlib.suppress(Exception):
                        _refresh(client, lines)
                    live.update(_view(lines, time.monotonic() - started))
                    dead = [w for w in workers if not w.alive()]
                    if dead:
                        raise RuntimeError(f"{dead[0].role} worker exited:\n{dead[0].log_tail()}")
                    finished = all(ln.done for ln in lines.values()) and all(
                        ln.scored >= ln.sent for ln in lines.values()
                    )
                    if finished and not follow:
                        break
                    if time.monotonic() - started > timeout_s and not follow:
                        raise RuntimeError(
                            f"not every frame was scored within {timeout_s:.0f} s; "
                            f"worker log:\n{workers[0].log_tail()}"
                        )
        except KeyboardInterrupt:
            interrupted = True
        finally:
            stop.set()
            # kafka-python 3.0 logs a read on a socket it is closing as an
            # ERROR with a traceback when a client shuts down; nothing is in
            # flight by then, so keep it off the demo's summary.
            logging.getLogger("kafka.net.transport").setLevel(logging.CRITICAL)
            for thread in threads:
                thread.join(timeout=5)
            producer.close()
            codes = [w.stop() for w in workers]
            workers_stopped.set()
            alert_thread.join(timeout=5)

        console.print("[bold]5/5[/] alerts against the labelled anomalies (test rows only)")
        table = Table()
        for column in (
            "line",
            "frames scored",
            "alerts raised",
            "F1",
            "FAR %",
            "MAR %",
            "faults caught",
            "false alarms",
        ):
            table.add_column(column, justify="right" if column != "line" else "left")
        total: AlertScore | None = None
        for line in lines.values():
            if follow:
                break  # retimed replays no longer line up with the file's labels
            line.score = _evaluate(client, line, train_rows)
            s = line.score
            if s is None:
                continue
            total = s if total is None else total + s
            table.add_row(
                line.line_id,
                str(line.scored),
                str(line.alerts_raised),
                f"{s.f1:.2f}",
                f"{s.far:.1f}",
                f"{s.mar:.1f}",
                f"{s.events_detected}/{s.events}",
                str(s.false_alarm_events),
            )
        if total is not None:
            table.add_row(
                "[bold]total[/]",
                str(sum(ln.scored for ln in lines.values())),
                str(sum(ln.alerts_raised for ln in lines.values())),
                f"[bold]{total.f1:.2f}[/]",
                f"{total.far:.1f}",
                f"{total.mar:.1f}",
                f"{total.events_detected}/{total.events}",
                str(total.false_alarm_events),
            )
            console.print(table)
        client.close()
        console.print(
            "Results are in InfluxDB (database "
            f"'{settings.influx.database}'). Query them with InfluxQL, e.g.:\n"
            f'  curl -G {local.influx_url}/query --data-urlencode "db={settings.influx.database}" '
            f'--data-urlencode "q=SELECT score, threshold, anomaly, top_sensors FROM '
            f"{RESULT_MEASUREMENT} WHERE line = '{next(iter(lines))}' AND anomaly = true "
            f'LIMIT 10"\n'
            "(this demo's servers stop now; `lineguard stack up` keeps a stack running)"
        )
        errors = [ln.error for ln in lines.values() if ln.error]
        if errors:
            console.print(f"[red]replay failed: {errors[0]}[/]")
            return 1
        if any(code not in (0, -signal.SIGTERM) for code in codes) and not interrupted:
            console.print(f"[yellow]worker exit codes: {codes}[/]")
        return 0
