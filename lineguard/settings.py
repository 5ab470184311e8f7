"""Service settings, read once per process from the environment.

Every LineGuard service (gateway, worker, archiver, CLI) reads the same
``LINEGUARD_*`` variables, so one env file configures a whole site. The local
stack (:mod:`lineguard.stack`) fills these in for the demo and the tests; in
production they point at the plant's Kafka cluster and InfluxDB.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
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

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

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

    url: str = "http://127.0.0.1:8086"
    database: str = "lineguard"
    retention_policy: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    timeout_s: float = 10.0
    # Compress large write bodies: saves network, costs CPU on both ends
    # (off for a worker on the same host as InfluxDB; see README Performance).
    gzip: bool = True

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

    telemetry: str = "lineguard.telemetry"
    dead_letter: str = "lineguard.telemetry.dlq"
    alerts: str = "lineguard.alerts"
    incidents: str = "lineguard.incidents"
    # Compacted: the latest model announcement per line (promote/rollback/shadow).
    models: str = "lineguard.models"
    # QA labels from other systems (lineguard.feedback.v1 JSON).
    feedback: str = "lineguard.feedback"
    partitions: int = 4


class BufferSettings(BaseSettings):
    """The gateway's store-and-forward disk buffer (``LINEGUARD_BUFFER_*``).

    See :mod:`lineguard.ingest.buffer`. ``dir`` unset: no disk buffer (a
    failed send fails the replay).
    """

    model_config = SettingsConfigDict(env_prefix="LINEGUARD_BUFFER_", extra="ignore")

    dir: Path | None = None
    max_bytes: int = 256 * 1024 * 1024
    segment_bytes: int = 8 * 1024 * 1024
    when_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    fsync: Literal["always", "segment", "never"] = "segment"
    historical_after_s: float = 10.0


class Settings(BaseSettings):
    """Everything one LineGuard service reads (``LINEGUARD_*``)."""

    model_config = SettingsConfigDict(env_prefix="LINEGUARD_", extra="ignore")

    site: str = "site-1"
    # Unset: STATE_DIR/registry, so the CLI and a worker started from any
    # directory see the same models (never a path relative to the cwd).
    registry_dir: Path | None = None
    worker_id: str = "lineguard-worker"
    # Where a worker keeps its local Faust state (table offsets, leader
    # election files): per host, never inside the source tree.
    state_dir: Path = Path.home() / ".local" / "state" / "lineguard"
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
