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

from pydantic import Field, SecretStr, field_serializer
from pydantic_settings import BaseSettings, SettingsConfigDict

from lineguard.contracts import TOPICS

__all__ = [
    "BufferSettings",
    "InfluxSettings",
    "KafkaSettings",
    "Settings",
    "TopicSettings",
    "get_settings",
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

    @field_serializer("url")
    def _dump_url(self, url: str) -> str:
        return redact_url(url)


class TopicSettings(BaseSettings):
    """Kafka topic names (``LINEGUARD_TOPIC_*``)."""

    model_config = SettingsConfigDict(env_prefix="LINEGUARD_TOPIC_", extra="ignore")

    # Roles and default names from lineguard.contracts.TOPICS.
    telemetry: str = TOPICS["telemetry"].default
    dead_letter: str = TOPICS["dead_letter"].default
    alerts: str = TOPICS["alerts"].default
    incidents: str = TOPICS["incidents"].default
    # Compacted: the latest model announcement per line (promote/rollback/shadow).
    models: str = TOPICS["models"].default
    # QA labels from other systems (lineguard.feedback.v1 JSON).
    feedback: str = TOPICS["feedback"].default
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
    registry_dir: Path = Path("registry")
    worker_id: str = "lineguard-worker"
    # Where a worker keeps its local Faust state (table offsets, leader
    # election files): per host, never inside the source tree.
    state_dir: Path = Path.home() / ".local" / "state" / "lineguard"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    buffer: BufferSettings = Field(default_factory=BufferSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment once."""
    return Settings()
