"""Service settings, read once per process from the environment.

Every LineGuard service (gateway, worker, archiver, CLI) reads the same
``LINEGUARD_*`` variables, so one env file configures a whole site. The local
stack (:mod:`lineguard.stack`) fills these in for the demo and the tests; in
production they point at the plant's Kafka cluster and InfluxDB.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from lineguard.contracts import TOPICS
from lineguard.errors import ConfigError

__all__ = [
    "BufferSettings",
    "InfluxSettings",
    "KafkaSettings",
    "Settings",
    "TopicSettings",
    "config_error",
    "get_settings",
    "redact_url",
    "settings_reference",
]


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and reprs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster (``LINEGUARD_KAFKA_*``)."""

    model_config = SettingsConfigDict(env_prefix="LINEGUARD_KAFKA_", extra="ignore")

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka brokers to start from, host:port[,host:port...]."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients talk to the brokers."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (unset with SASL_*: PLAIN)."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(
        None, description="SASL password (secret: never logged or shown)."
    )
    ssl_cafile: Path | None = Field(
        None, description="CA bundle that signed the brokers' certificates."
    )
    ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS).")
    ssl_keyfile: Path | None = Field(None, description="Client certificate's private key.")

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        # A Kafka bootstrap list is host:port[,host:port]; a URL or a bare
        # host can never connect, so it is refused before any client starts.
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit() or "/" in server:
                raise ValueError(
                    f"expected host:port[,host:port...], e.g. 127.0.0.1:9092; got {value!r}"
                )
        return value

    def kafka_python_config(self) -> dict[str, object]:
        """Connection options in kafka-python's spelling (gateway side)."""
        config: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            # Same default as the worker's Faust credentials.
            config["sasl_mechanism"] = self.sasl_mechanism or "PLAIN"
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.ssl_cafile:
            config["ssl_cafile"] = str(self.ssl_cafile)
        if self.ssl_certfile:
            config["ssl_certfile"] = str(self.ssl_certfile)
        if self.ssl_keyfile:
            config["ssl_keyfile"] = str(self.ssl_keyfile)
        return config


class InfluxSettings(BaseSettings):
    """How to reach InfluxDB through its v1 HTTP API (``LINEGUARD_INFLUX_*``).

    InfluxDB 1.x uses ``username``/``password``; 2.x (v1 compatibility) and
    3.x accept a ``token``. ``database`` maps to a 2.x bucket through a DBRP
    mapping.
    """

    model_config = SettingsConfigDict(env_prefix="LINEGUARD_INFLUX_", extra="ignore")

    url: str = Field(
        "http://127.0.0.1:8086",
        description="InfluxDB HTTP API, http:// or https:// with a host (may carry user:password;"
        " shown redacted).",
    )
    database: str = Field(
        "lineguard", description="Database (InfluxDB 2.x: mapped to a bucket by DBRP)."
    )
    retention_policy: str | None = Field(
        None, description="Retention policy to write to (unset: the database's default)."
    )
    username: str | None = Field(None, description="InfluxDB 1.x user (HTTP basic auth).")
    password: SecretStr | None = Field(None, description="InfluxDB 1.x password (secret).")
    token: SecretStr | None = Field(
        None, description="InfluxDB 2.x/3.x token, sent as Authorization: Token (secret)."
    )
    timeout_s: float = Field(
        10.0, description="Seconds to wait for InfluxDB to connect or answer a request."
    )
    # Compress large write bodies: saves network, costs CPU on both ends
    # (off for a worker on the same host as InfluxDB; see README Performance).
    gzip: bool = Field(True, description="Compress large write bodies.")

    # A URL may carry user:password; reprs and dumps show it redacted, like
    # the SecretStr fields (the clients read the field itself).
    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if name == "url" else value)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        # httpx would only fail at the first request (UnsupportedProtocol),
        # and a worker would retry that forever.
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "expected an http:// or https:// URL with a host, e.g. http://127.0.0.1:8086; "
                f"got {redact_url(value)!r}"
            )
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise ValueError(f"expected a numeric port; got {redact_url(value)!r}") from exc
        return value

    @field_validator("timeout_s")
    @classmethod
    def _positive_timeout(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"expected seconds > 0; got {value!r}")
        return value

    @field_serializer("url")
    def _dump_url(self, url: str) -> str:
        return redact_url(url)


class TopicSettings(BaseSettings):
    """Kafka topic names (``LINEGUARD_TOPIC_*``)."""

    model_config = SettingsConfigDict(env_prefix="LINEGUARD_TOPIC_", extra="ignore")

    # Roles and default names from lineguard.contracts.TOPICS.
    telemetry: str = Field(TOPICS["telemetry"].default, description="Gateway telemetry records.")
    dead_letter: str = Field(
        TOPICS["dead_letter"].default,
        description="Records that could not be processed, with the reason.",
    )
    alerts: str = Field(
        TOPICS["alerts"].default, description="Alert raised/cleared edges per line."
    )
    incidents: str = Field(
        TOPICS["incidents"].default, description="Incident open/update/close events."
    )
    models: str = Field(
        TOPICS["models"].default,
        description="Compacted: the latest model announcement per line (promote, rollback,"
        " shadow).",
    )
    feedback: str = Field(
        TOPICS["feedback"].default,
        description="QA labels from other systems (lineguard.feedback.v1 JSON).",
    )
    partitions: int = Field(4, description="Partitions of topics LineGuard creates.")


class BufferSettings(BaseSettings):
    """The gateway's store-and-forward disk buffer (``LINEGUARD_BUFFER_*``).

    See :mod:`lineguard.ingest.buffer`. ``dir`` unset: no disk buffer (a
    failed send fails the replay).
    """

    model_config = SettingsConfigDict(env_prefix="LINEGUARD_BUFFER_", extra="ignore")

    dir: Path | None = Field(
        None, description="Gateway store-and-forward buffer (unset: none; a failed send fails)."
    )
    max_bytes: int = Field(256 * 1024 * 1024, description="Most bytes the buffer keeps on disk.")
    segment_bytes: int = Field(8 * 1024 * 1024, description="Size of one buffer segment file.")
    when_full: Literal["drop_oldest", "drop_newest"] = Field(
        "drop_oldest", description="What a full buffer drops."
    )
    fsync: Literal["always", "segment", "never"] = Field(
        "segment", description="When buffered records are forced to disk."
    )
    historical_after_s: float = Field(
        10.0,
        description="Frames older than this when finally sent are marked historical (stored, never"
        " paged).",
    )


class Settings(BaseSettings):
    """Everything one LineGuard service reads (``LINEGUARD_*``)."""

    model_config = SettingsConfigDict(env_prefix="LINEGUARD_", extra="ignore")

    site: str = Field("site-1", description="Site id the gateway stamps on its records.")
    # Unset: STATE_DIR/registry, so the CLI and a worker started from any
    # directory see the same models (never a path relative to the cwd).
    registry_dir: Path | None = Field(
        None, description="Model registry (unset: STATE_DIR/registry)."
    )
    worker_id: str = Field(
        "lineguard-worker", description="Faust app id: workers with the same id share the load."
    )
    # Where a worker keeps its local Faust state (table offsets, leader
    # election files): per host, never inside the source tree.
    state_dir: Path = Field(
        Path.home() / ".local" / "state" / "lineguard",
        description="Per-host state: worker tables, leader files, and the default registry.",
    )
    # A file, not only the log and InfluxDB: while InfluxDB is down the
    # counters that describe the outage cannot be written there.
    stats_file: Path | None = Field(
        None,
        description=(
            "Worker: a JSON file rewritten with the worker's counters after every "
            "stored batch and every 5 s report (unset: none)."
        ),
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    buffer: BufferSettings = Field(default_factory=BufferSettings)

    @model_validator(mode="after")
    def _registry_under_state(self) -> Settings:
        if self.registry_dir is None:
            self.registry_dir = self.state_dir / "registry"
        return self


#: Each settings model and the prefix of its environment variables.
_PREFIXES: dict[str, str] = {
    "Settings": "LINEGUARD_",
    "KafkaSettings": "LINEGUARD_KAFKA_",
    "InfluxSettings": "LINEGUARD_INFLUX_",
    "TopicSettings": "LINEGUARD_TOPIC_",
    "BufferSettings": "LINEGUARD_BUFFER_",
}
_NESTED = {"kafka": "KAFKA_", "influx": "INFLUX_", "topics": "TOPIC_", "buffer": "BUFFER_"}


def config_error(exc: ValidationError) -> ConfigError:
    """A settings validation error as one line naming the environment variable.

    Parameters
    ----------
    exc : pydantic.ValidationError
        Raised by one of the settings models while reading the environment.

    Returns
    -------
    ConfigError
        ``LINEGUARD_INFLUX_URL: expected ...; got ...`` (first problem; the
        others follow after ``;`` when there are several).
    """
    prefix = _PREFIXES.get(exc.title, "LINEGUARD_")
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        name = prefix
        if prefix == "LINEGUARD_" and len(loc) > 1 and loc[0] in _NESTED:
            name += _NESTED[loc.pop(0)]
        message = str(error["msg"]).removeprefix("Value error, ")
        if "expected" not in message:  # pydantic's own: "Input should be a valid ..."
            message = message.replace("Input should be ", "expected ")
            message = f"{message}; got {error.get('input')!r}"
        problems.append(f"{name}{'_'.join(loc).upper()}: {message}")
    return ConfigError("; ".join(problems))


def _type_name(annotation: Any) -> str:
    """A field's type for the reference table (no ``|``: it splits Markdown cells)."""
    args = get_args(annotation)
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return _type_name(inner[0]) + " (optional)"
    if annotation is SecretStr:
        return "secret"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, Path):
        home = str(Path.home())
        text = str(value)
        return "~" + text[len(home) :] if text.startswith(home) else text
    return str(value)


def settings_reference() -> str:
    """The settings reference (``docs/settings.md``), generated from the models.

    Every field of :class:`Settings` and its nested groups, with its
    environment variable, type, default and description: the documentation
    cannot drift from the code because a test compares the committed file
    with this text (``lineguard settings --markdown`` prints it).
    """
    titles = {"kafka": "Kafka", "influx": "InfluxDB", "topics": "Topics", "buffer": "Buffer"}
    groups: list[tuple[str, str, Any]] = [("LINEGUARD_", "Service", Settings)]
    for name, title in titles.items():
        model = Settings.model_fields[name].default_factory
        groups.append((_PREFIXES[getattr(model, "__name__", "")], title, model))
    out = [
        "# Settings reference",
        "",
        "<!-- Generated by `lineguard settings --markdown` from lineguard/settings.py;"
        " do not edit. -->",
        "",
        "Every LineGuard process (gateway, worker, CLI) reads these environment variables",
        "once at start. A value that can never work (an InfluxDB URL without a scheme, a",
        "Kafka server without a port, a number that is not one) is refused at start with a",
        "one-line error naming the variable (exit code 2). Secrets are never logged or",
        "shown. `lineguard settings` prints the values in effect, secrets redacted.",
        "",
    ]
    for prefix, title, model in groups:
        doc = (model.__doc__ or "").strip().splitlines()[0].split(" (``")[0].rstrip(".") + "."
        out += [f"## {title} (`{prefix}*`)", "", doc, ""]
        out += ["| Variable | Type | Default | Meaning |", "|---|---|---|---|"]
        for name, info in model.model_fields.items():
            if model is Settings and name in _NESTED:
                continue
            default = info.get_default(call_default_factory=True)
            out.append(
                f"| `{prefix}{name.upper()}` | {_type_name(info.annotation)} | "
                f"`{_default_text(default)}` | {info.description or ''} |"
            )
        out.append("")
    return "\n".join(out)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment once.

    Raises
    ------
    ConfigError
        When a ``LINEGUARD_*`` variable can never work (an InfluxDB URL
        without a scheme, a Kafka server without a port, a number that is
        not one); the message names the variable, what was expected and what
        it holds.
    """
    try:
        return Settings()
    except ValidationError as exc:
        raise config_error(exc) from exc
