"""Model announcements: how a promotion reaches running workers.

The registry directory says which version is active (``ACTIVE``); a
compacted Kafka topic (``LINEGUARD_TOPIC_MODELS``, default
``lineguard.models``) *tells* every running worker, so a promotion, a
rollback or a shadow start takes effect at the next micro-batch on every
worker at once, without a restart and without each worker polling shared
storage.

One record per change, JSON ``lineguard.model-announcement.v1``::

    {"schema": "lineguard.model-announcement.v1", "line": "valve1-0",
     "role": "active", "action": "promote", "version": "v0002",
     "sha256": "<artifact sha256 from the manifest>", "at": "2026-...Z"}

* The key is the line id for the active model and ``<line>/shadow`` for the
  shadow candidate (``/`` cannot occur in a line id), so log compaction keeps
  exactly the latest active and the latest shadow announcement per line and
  a worker that starts later reads the whole current state from offset 0.
* ``sha256`` is the artifact hash the announcer saw: a worker loads the
  version through :meth:`lineguard.models.registry.Registry.load` (which
  checks the artifact against its manifest) and additionally refuses it when
  the manifest's hash differs from the announced one, i.e. when the bundle on
  the worker's storage is not the one that was promoted.
* ``action`` ``shadow_stop`` (version null) ends a shadow.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from lineguard.contracts import ANNOUNCEMENT_SCHEMA
from lineguard.errors import DataError
from lineguard.models.registry import Registry
from lineguard.settings import Settings

__all__ = [
    "ACTIONS",
    "ANNOUNCEMENT_SCHEMA",
    "Announcement",
    "InvalidAnnouncement",
    "activate_and_announce",
    "announce",
    "ensure_models_topic",
    "parse_announcement",
    "shadow_and_announce",
]

log = logging.getLogger(__name__)

#: What an announcement can say; ``role`` follows from it.
ACTIONS = {
    "activate": "active",
    "promote": "active",
    "rollback": "active",
    "shadow": "shadow",
    "shadow_stop": "shadow",
}


class InvalidAnnouncement(DataError):
    """A models-topic record that is not a valid announcement."""


@dataclass(frozen=True)
class Announcement:
    """One model change of one line.

    Attributes
    ----------
    line : str
        The production line.
    action : str
        One of :data:`ACTIONS`.
    version : str or None
        The version now served in ``role`` (None for ``shadow_stop``).
    sha256 : str or None
        The version's artifact hash, from its manifest.
    at : str
        When it was announced (ISO 8601, UTC).
    """

    line: str
    action: str
    version: str | None
    sha256: str | None
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    @property
    def role(self) -> str:
        """``active`` or ``shadow``."""
        return ACTIONS[self.action]

    @property
    def key(self) -> bytes:
        """Kafka key: compaction keeps the latest record per key."""
        return (self.line if self.role == "active" else f"{self.line}/shadow").encode()

    def to_bytes(self) -> bytes:
        """The record value."""
        return orjson.dumps({"schema": ANNOUNCEMENT_SCHEMA, "role": self.role, **asdict(self)})


def parse_announcement(value: bytes | None) -> Announcement:
    """Decode and check a models-topic record value.

    Raises
    ------
    InvalidAnnouncement
        Naming what was expected and what was found.
    """
    if not value:
        raise InvalidAnnouncement("expected a JSON announcement; got an empty value")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidAnnouncement(f"expected JSON; got {value[:80]!r}") from exc
    if not isinstance(data, dict) or data.get("schema") != ANNOUNCEMENT_SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise InvalidAnnouncement(f"expected schema {ANNOUNCEMENT_SCHEMA!r}; got {got!r}")
    action = data.get("action")
    if action not in ACTIONS:
        raise InvalidAnnouncement(f"expected action in {sorted(ACTIONS)}; got {action!r}")
    line, version = data.get("line"), data.get("version")
    if not isinstance(line, str) or not line:
        raise InvalidAnnouncement(f"expected a line id; got {line!r}")
    if action != "shadow_stop" and not isinstance(version, str):
        raise InvalidAnnouncement(f"{action}: expected a version; got {version!r}")
    return Announcement(
        line=line,
        action=action,
        version=version if action != "shadow_stop" else None,
        sha256=data.get("sha256"),
        at=str(data.get("at", "")),
    )


def ensure_models_topic(settings: Settings) -> None:
    """Create the compacted models topic if it is missing.

    One partition: announcements are rare and a single ordered log makes
    "latest per line" unambiguous. ``cleanup.policy=compact`` keeps the
    latest record per key forever, so the topic is the current state.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(client_id="lineguard-admin", **settings.kafka.kafka_python_config())
    try:
        if settings.topics.models in set(admin.list_topics()):
            return
        topic = NewTopic(
            settings.topics.models,
            num_partitions=1,
            replication_factor=1,
            topic_configs={"cleanup.policy": "compact"},
        )
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics([topic])
    finally:
        admin.close()


def announce(settings: Settings, announcement: Announcement, timeout_s: float = 30.0) -> None:
    """Publish one announcement and wait until the broker stored it."""
    from kafka import KafkaProducer

    ensure_models_topic(settings)
    producer = KafkaProducer(acks="all", **settings.kafka.kafka_python_config())
    try:
        producer.send(
            settings.topics.models, key=announcement.key, value=announcement.to_bytes()
        ).get(timeout_s)
    finally:
        producer.close()


def activate_and_announce(
    registry: Registry,
    settings: Settings | None,
    line: str,
    version: str,
    action: str = "promote",
) -> tuple[str | None, str | None]:
    """Activate ``version`` in the registry and announce it to the workers.

    The registry is written first: a worker that (re)starts without the
    topic still serves the right version from ``ACTIVE``.

    Returns
    -------
    previous : str or None
        The version that was active before.
    error : str or None
        Why the announcement could not be published (None when it was, or
        when ``settings`` is None). Workers then pick the version up from
        the ``ACTIVE`` file within a second, as long as they have no newer
        announcement for the line.
    """
    if ACTIONS.get(action) != "active":
        raise ValueError(f"expected an activating action (promote, rollback); got {action!r}")
    # Verify before telling anyone: a tampered bundle is never announced.
    bundle = registry.load(line, version)
    previous = registry.activate(line, version, action=action)
    # The shadowed candidate graduated: it is not a shadow any more.
    graduated = registry.shadow_version(line) == version
    if graduated:
        registry.set_shadow(line, None)
    if settings is None:
        return previous, None
    try:
        announce(
            settings,
            Announcement(line, action, version, bundle.manifest["artifact"]["sha256"]),
        )
        if graduated:
            announce(settings, Announcement(line, "shadow_stop", None, None))
    except Exception as exc:  # the registry change stands; report the gap
        return previous, f"{type(exc).__name__}: {exc}"
    return previous, None


def shadow_and_announce(
    registry: Registry, settings: Settings | None, line: str, version: str | None
) -> str | None:
    """Start (``version``) or stop (None) shadow scoring of a line.

    Returns the announcement error, if any (see :func:`activate_and_announce`).
    """
    sha = None
    if version is not None:
        if version == registry.active_version(line):
            raise ValueError(f"{line}/{version} is the active version; shadow a candidate")
        sha = registry.load(line, version).manifest["artifact"]["sha256"]
    registry.set_shadow(line, version)
    if settings is None:
        return None
    action = "shadow" if version is not None else "shadow_stop"
    try:
        announce(settings, Announcement(line, action, version, sha))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def as_dict(announcement: Announcement) -> dict[str, Any]:
    """JSON-friendly form (for logs and the CLI)."""
    return {"role": announcement.role, **asdict(announcement)}
