"""Live sources end to end: a recorded run played through a real OPC UA server
and through a real Sparkplug B edge node (mosquitto) reaches ``lineguard_score``
as the frames of a CSV replay of the same run, with one score point each.

Nothing is mocked: an asyncua server subprocess (``lineguard sim opcua``), a
mosquitto broker started by :mod:`lineguard.stack`, the Tansu broker, influxd
and a real scoring worker.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from lineguard.demo import WorkerProcess
from lineguard.influx import InfluxV1Client
from lineguard.ingest.contract import decode
from lineguard.ingest.csv_runs import read_run
from lineguard.ingest.gateway_config import parse_config
from lineguard.ingest.live import LiveGateway
from lineguard.models.registry import Registry
from lineguard.models.training import train_line_model
from lineguard.stack import MosquittoServer, free_port
from lineguard.stream.processor import RESULT_MEASUREMENT
from lineguard.stream.worker import ensure_topics
from tests.pipeline_support import consume_all, isolated_settings, wait_for_count

pytestmark = pytest.mark.integration

RUN = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab" / "valve1" / "0.csv"
SPEED = 40.0  # times real time: the run's 19 minutes in about 30 s


@pytest.fixture(scope="module")
def live(local_stack, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("live")
    env, settings = isolated_settings(local_stack, workdir, tag, "live")
    run = read_run(RUN)
    registry = Registry(settings.registry_dir)
    for line in ("opc-valve1-0", "spb-valve1-0"):
        train_line_model(registry, run, line, rows=400)
    ensure_topics(settings)
    worker = WorkerProcess("score", env, workdir / "score.log")
    client = InfluxV1Client(settings.influx)
    yield settings, run, worker, client, workdir
    client.close()
    worker.stop()


def _config(
    settings, workdir: Path, line: str, source: str, tags: list[str], extra: str = ""
) -> str:
    sensors = "".join(
        f'[[sensors]]\nline = "{line}"\nname = "{name}"\nsource = "src"\n{t}\n' for name, t in tags
    )
    return (
        f'site = "site-1"\ngateway_id = "gw-{line}"\ntopic = "{settings.topics.telemetry}"\n'
        f'state_dir = "{workdir / line}"\ntick_s = 0.1\n'
        f'[kafka]\nbootstrap_servers = "{settings.kafka.bootstrap_servers}"\n'
        f"{source}\n"
        # Played 40x: publishing delays of 0.05 s are 2 s of source time.
        f"[lines.{line}]\nperiod_s = 1.0\nlateness_s = 5.0\nstaleness_s = 5.0\n"
        'frames = "on_update"\n'
        f"{extra}{sensors}"
    )


def _run_gateway(gateway: LiveGateway, done, expected: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gateway.tick()
        if done() and gateway.stats.frames >= expected:
            break
        time.sleep(0.1)
    for reader in gateway.readers:
        reader.stop()
    assert gateway.stats.frames == expected, gateway.snapshot()
    assert gateway._forward is not None
    assert gateway._forward.drain(30.0), gateway._forward.stats()


def _assert_same_as_replay(settings, run, worker, client, line: str, gateway_id: str) -> None:
    records = [
        r
        for r in consume_all(settings, settings.topics.telemetry, 10_000, timeout=15)
        if r.key == line.encode()
    ]
    batches = [decode(r.value) for r in records]
    assert {b.gateway for b in batches} == {gateway_id}
    times = np.concatenate([b.time_us for b in batches])
    values = np.vstack([b.values for b in batches])
    # The frames of a CSV replay: every row once, in order, same values.
    np.testing.assert_array_equal(times, run.time_us)
    np.testing.assert_array_equal(values, run.values)
    assert batches[0].sensors == run.sensors
    query = f'SELECT count("score") FROM "{RESULT_MEASUREMENT}" WHERE "line" = \'{line}\''
    assert wait_for_count(client, query, len(run), [worker]) == len(run)
    rows = client.query(
        f'SELECT "score" FROM "{RESULT_MEASUREMENT}" WHERE "line" = \'{line}\'', epoch="u"
    )
    np.testing.assert_array_equal(np.sort([r["time"] for r in rows]), run.time_us)


def test_opcua_run_reaches_scores_as_the_frames_of_a_csv_replay(live):
    settings, run, worker, client, workdir = live
    port = free_port()
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lineguard.cli",
            "sim",
            "opcua",
            str(RUN),
            "--port",
            str(port),
            "--speed",
            str(SPEED),
            "--wait-for-items",
            str(len(run.sensors)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines_out: list[str] = []
    threading.Thread(target=lambda: lines_out.extend(sim.stdout), daemon=True).start()
    try:
        source = (
            f'[[sources]]\ntype = "opcua"\nname = "src"\n'
            f'endpoint = "opc.tcp://127.0.0.1:{port}/lineguard/"\n'
            "publishing_interval_s = 0.05\nsampling_interval_s = 0.0\nqueue_size = 1000\n"
        )
        # Half the tags by node id, half by browse path.
        tags = [
            (s, f'tag = "ns=2;s=valve1-0.{s}"' if i % 2 else f'tag = "/Objects/2:valve1-0/2:{s}"')
            for i, s in enumerate(run.sensors)
        ]
        config = parse_config(_config(settings, workdir, "opc-valve1-0", source, tags))
        gateway = LiveGateway(config).start()
        _run_gateway(gateway, lambda: any("all rows played" in x for x in lines_out), len(run))
        stats = gateway.snapshot()
        assert stats["sources"]["unknown_tag"] == 0, stats
        assert stats["lines"]["opc-valve1-0"]["late"] == 0, stats
    finally:
        sim.terminate()
        sim.wait(10)
    _assert_same_as_replay(settings, run, worker, client, "opc-valve1-0", "gw-opc-valve1-0")


def test_sparkplug_run_reaches_scores_as_the_frames_of_a_csv_replay(live):
    from lineguard.ingest.sim.sparkplug import EdgeNodeSim, publish_runs

    settings, run, worker, client, workdir = live
    with MosquittoServer() as broker:
        node = EdgeNodeSim([("valve1-0", run)], "127.0.0.1", broker.port, "Plant", "sim").start()
        source = (
            f'[[sources]]\ntype = "sparkplug"\nname = "src"\nhost = "127.0.0.1"\n'
            f'port = {broker.port}\ngroup_id = "Plant"\nedge_node = "sim"\n'
        )
        tags = [(s, f'device = "valve1-0"\ntag = "{s}"') for s in run.sensors]
        config = parse_config(_config(settings, workdir, "spb-valve1-0", source, tags))
        gateway = LiveGateway(config).start()
        reader = gateway.readers[0]
        deadline = time.monotonic() + 30
        while not (reader._born and "valve1-0" in reader._devices_born):
            assert time.monotonic() < deadline, "no birth reached the gateway"
            time.sleep(0.05)
        done = threading.Event()

        def play() -> None:
            publish_runs(node, speed=SPEED)
            done.set()

        threading.Thread(target=play, daemon=True).start()
        _run_gateway(gateway, done.is_set, len(run))
        node.stop()
        stats = gateway.snapshot()
        assert stats["sources"]["seq_gap"] == 0 and stats["sources"]["unknown_alias"] == 0, stats
    _assert_same_as_replay(settings, run, worker, client, "spb-valve1-0", "gw-spb-valve1-0")
