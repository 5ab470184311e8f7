"""Every way a command can fail because of the user's setup or data ends in
one line naming what was expected, what arrived and where, with exit code 1
(at run time) or 2 (configuration); ``-v`` adds the traceback.

Against real sockets and files: a port nothing listens on, a port that
accepts connections but never answers HTTP, the broker's port, a CSV with a
short row.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from lineguard.cli import main
from lineguard.settings import get_settings

SAMPLE = Path(__file__).parents[2] / "examples" / "data" / "skab" / "valve1" / "1.csv"
LINE = "press-7"


def invoke(args: list[str], env: dict[str, str]) -> Result:
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(main, args, env=env)
    finally:
        get_settings.cache_clear()


def assert_one_line(result: Result, code: int, *parts: str) -> str:
    """The command failed with ``code`` and one ``Error:`` line holding ``parts``."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for part in parts:
        assert part in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("registry")
    result = invoke(
        ["train", "--line", LINE, "--rows", "400", "--registry", str(path), str(SAMPLE)], {}
    )
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def closed_port() -> int:
    # Bound then closed: nothing listens there, connections are refused.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    # Listening, so the kernel completes the TCP handshake, but never
    # answering: what a port of another protocol (or a hung server) does.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def influx_commands(registry: Path) -> list[list[str]]:
    times = ["--start", "2020-03-09T10:00:00", "--end", "2020-03-09T11:00:00"]
    reg = ["--registry", str(registry)]
    return [
        ["feedback", "list", LINE],
        ["feedback", "mark", LINE, "--label", "false_alarm", *times],
        ["feedback", "alert", LINE, "--label", "false_alarm", "--at", "2020-03-09T10:40:00"],
        ["train", "--line", LINE, "--from-influx", *times, *reg],
        ["models", "evaluate", LINE, "v0001", "--from-influx", *times, *reg],
        ["models", "compare", LINE, "--a", "v0001", "--b", "v0001", *reg],
    ]


def test_unreachable_influx_is_one_line_naming_the_url(registry: Path, closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    for args in influx_commands(registry):
        result = invoke(args, {"LINEGUARD_INFLUX_URL": url})
        assert_one_line(result, 1, f"InfluxDB at {url}", "LINEGUARD_INFLUX_URL", "refused")


def test_a_port_that_never_answers_http_names_the_timeout(registry: Path, silent_port: int) -> None:
    env = {
        "LINEGUARD_INFLUX_URL": f"http://127.0.0.1:{silent_port}",
        "LINEGUARD_INFLUX_TIMEOUT_S": "0.3",
    }
    for args in influx_commands(registry)[:1] + influx_commands(registry)[4:5]:
        result = invoke(args, env)
        assert_one_line(
            result,
            1,
            f"127.0.0.1:{silent_port}",
            "no answer within 0.3 s",
            "LINEGUARD_INFLUX_TIMEOUT_S",
        )


@pytest.mark.integration
def test_influx_url_at_the_brokers_port(local_stack, registry: Path) -> None:
    url = f"http://{local_stack.kafka_bootstrap}"
    env = {"LINEGUARD_INFLUX_URL": url, "LINEGUARD_INFLUX_TIMEOUT_S": "1"}
    result = invoke(["feedback", "list", LINE], env)
    line = assert_one_line(result, 1, f"InfluxDB at {url}", "LINEGUARD_INFLUX_URL")
    # The broker either never answers or answers in Kafka's framing.
    assert "no answer within 1 s" in line or "not HTTP" in line or "no connection" in line


def test_a_url_without_scheme_is_refused_before_anything_runs(registry: Path) -> None:
    for args in [*influx_commands(registry), ["worker"]]:
        result = invoke(args, {"LINEGUARD_INFLUX_URL": "127.0.0.1:8086"})
        assert_one_line(
            result,
            2,
            "LINEGUARD_INFLUX_URL",
            "expected an http:// or https:// URL",
            "'127.0.0.1:8086'",
        )


def test_kafka_servers_that_are_urls_are_refused_naming_the_setting() -> None:
    result = invoke(["worker"], {"LINEGUARD_KAFKA_BOOTSTRAP_SERVERS": "kafka://broker"})
    assert_one_line(result, 2, "LINEGUARD_KAFKA_BOOTSTRAP_SERVERS", "host:port", "kafka://broker")


def test_verbose_adds_the_traceback(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    result = invoke(["-v", "feedback", "list", LINE], {"LINEGUARD_INFLUX_URL": url})
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "httpx.ConnectError" in result.stderr  # the cause, chained
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: InfluxDB at {url}")


def test_gateway_replay_reports_a_malformed_row_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad_short.csv"
    lines = SAMPLE.read_text().splitlines()[:30]
    lines[21] = "2020-03-09 10:35:00;0.1;0.2;0.3"
    bad.write_text("\n".join(lines) + "\n")
    result = invoke(["gateway", "replay", "--line", LINE, "--speed", "0", str(bad)], {})
    assert_one_line(result, 1, "bad_short.csv:22: expected 11 cells; got 4")


def test_a_registry_setting_that_is_a_file_names_the_path(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "registry"
    not_a_dir.write_text("")
    result = invoke(
        ["train", "--line", LINE, "--rows", "400", str(SAMPLE)],
        {"LINEGUARD_REGISTRY_DIR": str(not_a_dir)},
    )
    assert_one_line(result, 1, str(not_a_dir))


def test_gateway_replay_with_no_broker_names_the_bootstrap_servers(closed_port: int) -> None:
    # A subprocess: kafka-python's own logging must not reach the user either.
    env = {**os.environ, "LINEGUARD_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port}"}
    result = subprocess.run(
        [sys.executable, "-m", "lineguard.cli", "gateway", "replay", "--line", LINE, str(SAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: Kafka at 127.0.0.1:{closed_port}")
    assert "(LINEGUARD_KAFKA_BOOTSTRAP_SERVERS): expected a broker" in line
