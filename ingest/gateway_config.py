"""The site gateway's config file (TOML): schema, validation, line numbers.

One file per gateway (a site, or a cell of a site) says where the tags come
from and which line's sensor each one is. It is written by a site engineer,
so every mistake is refused at start with the line of the file it is on:
pydantic's error locations (``("sensors", 3, "tag")``) are mapped back to
TOML line numbers by :class:`TomlLines`, and the cross checks pydantic cannot
express (a sensor naming an undeclared line or source, one tag feeding two
sensors, a sensor name used twice in a line) report the same way.

See ``docs/gateway.md`` for the reference and ``examples/gateway/`` for a
complete file.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from lineguard.settings import KafkaSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the gateway extra installs tomli there
    import tomli as tomllib

__all__ = [
    "BufferSection",
    "ConfigError",
    "GatewayConfig",
    "GatewayError",
    "KafkaSection",
    "LineConfig",
    "MqttJsonSource",
    "OpcUaSource",
    "SensorConfig",
    "SparkplugSource",
    "TomlLines",
    "load_config",
    "parse_config",
]

_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class GatewayError(RuntimeError):
    """Base class of the live gateway's errors."""


class ConfigError(GatewayError, ValueError):
    """A gateway config file that cannot be used; the message names its line."""


class _Model(BaseModel):
    # A misspelt key is an error, not silently a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpcUaSource(_Model):
    """An OPC UA server the gateway subscribes to."""

    type: Literal["opcua"]
    name: Annotated[str, Field(pattern=_ID)]
    endpoint: Annotated[str, Field(pattern=r"^opc\.tcp://")]
    #: ``None`` (no security) or ``Basic256Sha256``.
    security_policy: Literal["None", "Basic256Sha256"] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None
    private_key: Path | None = None
    server_certificate: Path | None = None
    #: The gateway's OPC UA application URI; the client certificate's
    #: subjectAltName URI must be this (servers check it).
    application_uri: str = "urn:lineguard:gateway"
    username: str | None = None
    password: SecretStr | None = None
    #: How often the server samples each tag, and how often it publishes.
    sampling_interval_s: Annotated[float, Field(ge=0)] = 0.1
    publishing_interval_s: Annotated[float, Field(gt=0)] = 0.5
    #: Absolute deadband: changes smaller than this are not sent (0 = all).
    deadband: Annotated[float, Field(ge=0)] = 0.0
    #: Notifications the server queues per tag between publishes.
    queue_size: Annotated[int, Field(ge=1)] = 100
    timeout_s: Annotated[float, Field(gt=0)] = 5.0
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0)] = 30.0

    @model_validator(mode="after")
    def _security(self) -> OpcUaSource:
        secure = self.security_policy != "None"
        if secure != (self.security_mode != "None"):
            raise ValueError(
                "expected security_policy and security_mode both 'None' or both set "
                f"(Basic256Sha256 with Sign or SignAndEncrypt); got {self.security_policy!r} "
                f"with {self.security_mode!r}"
            )
        if secure and (self.certificate is None or self.private_key is None):
            raise ValueError(
                "expected certificate and private_key (client certificate and its key) "
                f"with security_policy {self.security_policy!r}"
            )
        return self


class _MqttBase(_Model):
    name: Annotated[str, Field(pattern=_ID)]
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    #: TLS: on when ``tls`` is true or any file is given.
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    keepalive_s: Annotated[int, Field(ge=5)] = 30
    reconnect_min_s: Annotated[float, Field(gt=0)] = 0.5
    reconnect_max_s: Annotated[float, Field(gt=0)] = 30.0


class SparkplugSource(_MqttBase):
    """A Sparkplug B edge node (its NBIRTH/DBIRTH/NDATA/DDATA) on an MQTT broker."""

    type: Literal["sparkplug"]
    group_id: Annotated[str, Field(pattern=r"^[^/+#]+$")]
    edge_node: Annotated[str, Field(pattern=r"^[^/+#]+$")]
    #: Ask the edge node for a rebirth (NCMD ``Node Control/Rebirth``) on a
    #: seq gap or an unknown alias.
    request_rebirth: bool = True


class MqttJsonSource(_MqttBase):
    """Plain MQTT: one topic per tag, a JSON object (or bare number) payload."""

    type: Literal["mqtt_json"]
    value_field: str = "value"
    #: Milliseconds since the epoch (number) or ISO-8601 with a zone; absent:
    #: the receive time is used.
    time_field: str = "timestamp"
    #: Optional field; a value other than ``good`` (case-insensitive) or true
    #: is bad quality.
    quality_field: str = "quality"


Source = Annotated[OpcUaSource | SparkplugSource | MqttJsonSource, Field(discriminator="type")]


class KafkaSection(_Model):
    """Where to send telemetry (same meaning as ``LINEGUARD_KAFKA_*``)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    def settings(self) -> KafkaSettings:
        """As the :class:`~lineguard.settings.KafkaSettings` the producer takes."""
        return KafkaSettings(**self.model_dump())


class BufferSection(_Model):
    """The store-and-forward disk buffer (see :mod:`lineguard.ingest.buffer`).

    ``dir`` unset: ``<state_dir>/buffer-<gateway_id>``.
    """

    dir: Path | None = None
    max_bytes: Annotated[int, Field(ge=2048)] = 256 * 1024 * 1024
    segment_bytes: Annotated[int, Field(ge=1024)] = 8 * 1024 * 1024
    when_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    fsync: Literal["always", "segment", "never"] = "segment"
    historical_after_s: Annotated[float, Field(gt=0)] = 10.0


class LineConfig(_Model):
    """A line: how often its frames are made, and defaults for its sensors."""

    period_s: Annotated[float, Field(gt=0)] = 1.0
    #: Wait this long past a period's end (source clock) before sending it.
    lateness_s: Annotated[float, Field(ge=0)] = 1.0
    staleness_s: Annotated[float, Field(gt=0)] = 5.0
    #: ``every_period``: a frame per period while any reading is fresh
    #: (sample-and-hold); ``on_update``: only periods in which some sensor
    #: reported (a source that samples the whole line at once, or a replayed
    #: recording with gaps, gives exactly its rows).
    frames: Literal["every_period", "on_update"] = "every_period"


class SensorConfig(_Model):
    """One sensor of one line, fed by one source tag."""

    line: str
    name: Annotated[str, Field(min_length=1)]
    source: str
    #: OPC UA: a node id (``ns=2;s=Valve1.Pressure``) or a browse path
    #: (``/Objects/2:Valve1/2:Pressure``); Sparkplug: the metric name; MQTT
    #: JSON: the topic.
    tag: Annotated[str, Field(min_length=1)]
    #: Sparkplug only: the device id (absent: a metric of the edge node).
    device: str | None = None
    staleness_s: Annotated[float, Field(gt=0)] | None = None


class GatewayConfig(_Model):
    """A site gateway: identity, Kafka, buffer, sources, lines and sensors."""

    site: Annotated[str, Field(pattern=_ID)]
    gateway_id: Annotated[str, Field(pattern=_ID)]
    topic: str = "lineguard.telemetry"
    state_dir: Path = Path("/var/lib/lineguard")
    #: How often frames are assembled and sent (each record holds the
    #: periods closed since the previous tick).
    tick_s: Annotated[float, Field(gt=0)] = 0.25
    kafka: KafkaSection = Field(default_factory=KafkaSection)
    buffer: BufferSection = Field(default_factory=BufferSection)
    sources: list[Source]
    lines: dict[Annotated[str, Field(pattern=_ID)], LineConfig]
    sensors: Annotated[list[SensorConfig], Field(min_length=1)]

    def line_sensors(self, line: str) -> list[SensorConfig]:
        """The line's sensors in file order (its telemetry column order)."""
        return [s for s in self.sensors if s.line == line]

    def source(self, name: str) -> OpcUaSource | SparkplugSource | MqttJsonSource:
        """The source called ``name``."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

    def staleness_s(self, sensor: SensorConfig) -> float:
        """The sensor's staleness bound (its own, else its line's)."""
        if sensor.staleness_s is not None:
            return sensor.staleness_s
        return self.lines[sensor.line].staleness_s


class TomlLines:
    """Line numbers of the tables and keys of a TOML document.

    Enough of TOML for config files: ``[table]``, ``[[array.of.tables]]``,
    ``key = value`` (bare or quoted keys), inline values on one line.
    :meth:`line_of` finds the deepest known prefix of a pydantic error
    location, so an error inside a value points at that value's key.
    """

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
    _KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_\-.]+)\s*=""")

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[Any, ...], int] = {}
        counts: dict[tuple[str, ...], int] = {}
        table: tuple[Any, ...] = ()
        in_multiline: str | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if in_multiline is not None:
                if in_multiline in line:
                    in_multiline = None
                continue
            if not line or line.startswith("#"):
                continue
            header = self._HEADER.match(line)
            if header:
                names = tuple(_unquote(p) for p in _split_dotted(header.group(2)))
                if header.group(1) == "[[":
                    index = counts.get(names, 0)
                    counts[names] = index + 1
                    table = (*names, index)
                else:
                    table = names
                self.lines.setdefault(table, number)
                continue
            key = self._KEY.match(line)
            if key:
                names = tuple(_unquote(p) for p in _split_dotted(key.group(1)))
                self.lines.setdefault((*table, *names), number)
                rest = line[key.end() :]
                for quote in ('"""', "'''"):
                    if rest.count(quote) == 1:
                        in_multiline = quote

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        """Line number of ``loc`` or of its deepest known parent."""
        for n in range(len(loc), 0, -1):
            found = self.lines.get(tuple(loc[:n]))
            if found is not None:
                return found
        return None


def _split_dotted(key: str) -> list[str]:
    return [p.strip() for p in re.findall(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|[^.]+', key)]


def _unquote(part: str) -> str:
    if len(part) >= 2 and part[0] == part[-1] and part[0] in "\"'":
        return part[1:-1]
    return part


def _where(path: str, lines: TomlLines, loc: tuple[Any, ...]) -> str:
    number = lines.line_of(loc)
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    return f"{path}:{number}: {dotted}" if number else f"{path}: {dotted}"


def parse_config(text: str, path: str = "gateway.toml") -> GatewayConfig:
    """Validate a config file's text.

    Raises
    ------
    ConfigError
        With one line per problem: ``file:line: location: what was expected,
        what arrived``.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    lines = TomlLines(text)
    try:
        config = GatewayConfig.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            problems.append(f"{_where(path, lines, loc)}: {err['msg']}{shown}")
        raise ConfigError("invalid gateway config:\n  " + "\n  ".join(problems)) from exc
    problems = _cross_check(config, lines, path)
    if problems:
        raise ConfigError("invalid gateway config:\n  " + "\n  ".join(problems))
    return config


_UNION_TAGS = {"opcua", "sparkplug", "mqtt_json"}


def _cross_check(config: GatewayConfig, lines: TomlLines, path: str) -> list[str]:
    problems: list[str] = []
    sources = {}
    for i, source in enumerate(config.sources):
        if source.name in sources:
            problems.append(
                f"{_where(path, lines, ('sources', i, 'name'))}: expected unique source names; "
                f"{source.name!r} is also source {sources[source.name]}"
            )
        sources.setdefault(source.name, i)
    tags: dict[tuple[str, str | None, str], int] = {}
    names: dict[tuple[str, str], int] = {}
    for i, sensor in enumerate(config.sensors):
        if sensor.line not in config.lines:
            problems.append(
                f"{_where(path, lines, ('sensors', i, 'line'))}: expected one of the lines "
                f"declared under [lines] ({', '.join(sorted(config.lines)) or 'none'}); "
                f"got unknown line {sensor.line!r}"
            )
        if sensor.source not in sources:
            problems.append(
                f"{_where(path, lines, ('sensors', i, 'source'))}: expected one of the sources "
                f"({', '.join(sorted(sources)) or 'none'}); got unknown source {sensor.source!r}"
            )
        else:
            kind = config.sources[sources[sensor.source]].type
            if sensor.device is not None and kind != "sparkplug":
                problems.append(
                    f"{_where(path, lines, ('sensors', i, 'device'))}: 'device' is for "
                    f"Sparkplug sources; source {sensor.source!r} is {kind}"
                )
        key = (sensor.source, sensor.device, sensor.tag)
        if key in tags:
            j = tags[key]
            other = config.sensors[j]
            problems.append(
                f"{_where(path, lines, ('sensors', i, 'tag'))}: expected each tag to feed one "
                f"sensor; tag {sensor.tag!r} of source {sensor.source!r} already feeds "
                f"{other.line}/{other.name} (line {lines.line_of(('sensors', j, 'tag'))})"
            )
        tags.setdefault(key, i)
        name_key = (sensor.line, sensor.name)
        if name_key in names:
            problems.append(
                f"{_where(path, lines, ('sensors', i, 'name'))}: expected unique sensor names "
                f"per line; {sensor.line}/{sensor.name} is declared twice"
            )
        names.setdefault(name_key, i)
    for line in config.lines:
        if not any(s.line == line for s in config.sensors):
            problems.append(f"{_where(path, lines, ('lines', line))}: line {line!r} has no sensors")
    return problems


def load_config(path: Path | str) -> GatewayConfig:
    """Read and validate a gateway config file (see :func:`parse_config`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read gateway config {path}: {exc}") from exc
    return parse_config(text, str(path))
