"""How a running worker learns about promotions, rollbacks and shadows.

:class:`ModelUpdates` follows the compacted models topic
(:mod:`lineguard.models.announce`) in a background thread, from offset 0, so
it always knows the latest announcement of every line. The scoring
processor asks it, at the start of each micro-batch, which version each
line should be served and which one shadowed; a change therefore takes
effect exactly between two micro-batches: every frame is scored once, by
the version that was current when its batch started, and its result point
carries that version.

The thread uses its own kafka-python consumer without a consumer group
(every worker must see every announcement, whatever telemetry partitions it
owns). A malformed announcement is logged and skipped; the topic is written
by ``lineguard models promote|rollback|shadow`` only.

Pure helpers used at the switch live here too:

* :func:`carry_state` -- what scoring state a new version inherits;
* :func:`shadow_lines` -- a shadow version's points for the same frames.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np

from lineguard.contracts import SHADOW_ROLE
from lineguard.detectors.points import result_points
from lineguard.detectors.scoring import ScoringState, score_batch
from lineguard.models.announce import Announcement, InvalidAnnouncement, parse_announcement
from lineguard.models.registry import ModelBundle, ModelIntegrityError, Registry
from lineguard.retry import Backoff, run_until_stopped
from lineguard.settings import Settings

__all__ = [
    "SHADOW_TAG",
    "ModelUpdates",
    "carry_state",
    "load_announced",
    "shadow_lines",
]

log = logging.getLogger(__name__)

# A steady one-second reconnect while the broker is away.
_RECONNECT = Backoff(1.0, 1.0)

#: Tag (and value) marking a shadow version's points in ``lineguard_score``.
SHADOW_TAG = ("role", SHADOW_ROLE)


class ModelUpdates:
    """The latest model announcement per line, kept current by a thread.

    Parameters
    ----------
    settings : Settings or None
        Broker and topic names; None builds an unconnected instance that is
        fed with :meth:`apply` (tests, offline evaluation).
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self._active: dict[str, Announcement] = {}
        self._shadow: dict[str, Announcement] = {}
        # (line, version) pairs that failed verification: not retried per batch.
        self._refused: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = 0
        # Times the follower's consumer failed and was built again (broker
        # unreachable at start, or an error while following).
        self.reconnects = 0

    # -- state -------------------------------------------------------------
    def apply(self, value: bytes | None) -> Announcement | None:
        """Take one record value into account; returns it, or None if invalid."""
        try:
            announcement = parse_announcement(value)
        except InvalidAnnouncement as exc:
            log.warning("ignoring a models-topic record: %s", exc)
            return None
        with self._lock:
            table = self._active if announcement.role == "active" else self._shadow
            if announcement.version is None:
                table.pop(announcement.line, None)
            else:
                table[announcement.line] = announcement
            self.applied += 1
        log.info(
            "model announcement: line %s %s %s",
            announcement.line,
            announcement.action,
            announcement.version,
        )
        return announcement

    def active(self, line: str) -> Announcement | None:
        """The announced active version of ``line``, unless it was refused."""
        found = self._active.get(line)
        if found is None or (line, found.version) in self._refused:
            return None
        return found

    def shadow(self, line: str) -> Announcement | None:
        """The announced shadow version of ``line``, unless it was refused."""
        found = self._shadow.get(line)
        if found is None or (line, found.version) in self._refused:
            return None
        return found

    def announced(self) -> str:
        """The announcements in force, ``line:role=version`` comma-separated and sorted.

        Reported in the worker's stats, so that a supervisor (or a test) can
        see which promotion or shadow a worker has taken in, without its log.
        """
        with self._lock:
            entries = [f"{line}:active={a.version}" for line, a in self._active.items()]
            entries += [f"{line}:shadow={a.version}" for line, a in self._shadow.items()]
        return ",".join(sorted(entries))

    def refused(self, line: str, version: str) -> bool:
        """Whether ``version`` of ``line`` already failed to load here."""
        return (line, version) in self._refused

    def refuse(self, line: str, version: str) -> None:
        """Remember that a version failed to load, so it is not retried every batch."""
        self._refused.add((line, version))

    # -- the follower thread -----------------------------------------------
    def start(self) -> ModelUpdates:
        """Start following the topic in a daemon thread."""
        if self.settings is None:
            raise RuntimeError("ModelUpdates was built without settings; feed it with apply()")
        self._thread = threading.Thread(target=self._run, name="lineguard-model-updates")
        self._thread.daemon = True
        self._thread.start()
        return self

    def caught_up(self) -> bool:
        """Whether the topic was read to its end once since the start."""
        return self._caught_up.is_set()

    def wait_caught_up(self, timeout_s: float) -> bool:
        """Block until the topic was read to its end once (or the timeout)."""
        return self._caught_up.wait(timeout_s)

    def stop(self) -> None:
        """Stop the thread (it exits within one poll)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        # The broker may be restarting: reconnect every second until stopped.
        run_until_stopped(
            "models topic follower", self._follow_counted, self._stop, _RECONNECT, logger=log
        )

    def _follow_counted(self) -> None:
        """:meth:`_follow`, counting each failure the reconnect policy then retries."""
        try:
            self._follow()
        except Exception:
            self.reconnects += 1
            raise

    def _follow(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        assert self.settings is not None
        topic = self.settings.topics.models
        while not self._stop.is_set():
            consumer = None
            try:
                consumer = KafkaConsumer(
                    group_id=None,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    fetch_max_wait_ms=100,
                    **self.settings.kafka.kafka_python_config(),
                )
                partitions = consumer.partitions_for_topic(topic)
                if not partitions:
                    # Nothing announced yet: the topic appears with the first promotion.
                    self._caught_up.set()
                    consumer.close()
                    self._stop.wait(2.0)
                    continue
                assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
                consumer.assign(assigned)
                consumer.seek_to_beginning(*assigned)
                end = consumer.end_offsets(assigned)
                while not self._stop.is_set():
                    for records in consumer.poll(timeout_ms=200).values():
                        for record in records:
                            self.apply(record.value)
                    if not self._caught_up.is_set() and all(
                        consumer.position(tp) >= end[tp] for tp in assigned
                    ):
                        self._caught_up.set()
            finally:
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:
                        log.debug("closing the models consumer failed", exc_info=True)


def load_announced(
    registry: Registry, line: str, version: str, announcement: Announcement | None
) -> ModelBundle:
    """Load a version, and check it is the very bundle that was announced.

    Raises
    ------
    ModelIntegrityError
        From the registry (tampered artifact, foreign types), or when the
        manifest's artifact hash differs from the announced one.
    """
    bundle = registry.load(line, version)
    if announcement is not None and announcement.sha256:
        stored = bundle.manifest["artifact"]["sha256"]
        if stored != announcement.sha256:
            raise ModelIntegrityError(
                f"{line}/{version}: announced artifact sha256 {announcement.sha256}, "
                f"registry has {stored}; refusing a bundle that is not the promoted one"
            )
    return bundle


def carry_state(
    old: ModelBundle | None, new: ModelBundle, state: ScoringState | None
) -> ScoringState | None:
    """The scoring state a newly served version starts from.

    * The temporal-feature context is kept when both versions read the same
      sensors: it holds the last raw rows (imputed, in sensor units, not in
      either model's scaling), so the new version's first frames get full
      windows instead of a warm-up that could itself look anomalous.
    * The debounce history (recent threshold exceedances) is kept too,
      trimmed to the new ``n - 1``: an alert in progress continues across a
      promotion instead of clearing and re-raising, and the carried flags
      age out within ``n - 1`` frames.
    * Different sensors (or no state): start afresh.
    """
    if state is None or old is None or old.sensors != new.sensors:
        return None
    _, n = new.debounce
    flags = np.asarray(state.flags, dtype=bool)
    flags = flags[max(flags.size - (n - 1), 0) :] if n > 1 else flags[:0]
    context = state.context
    window = int(getattr(new.pipeline, "window", 1))
    if context is not None:
        context = context[max(context.shape[0] - max(window - 1, 1), 0) :]
    return ScoringState(
        context=context,
        flags=flags.copy(),
        alerted=state.alerted,
        last_time_us=state.last_time_us,
    )


def shadow_lines(
    bundle: ModelBundle,
    X: np.ndarray,
    state: ScoringState | None,
    time_us: np.ndarray,
    historical: np.ndarray,
    site: str,
    line: str,
) -> tuple[str, ScoringState, dict[str, Any]]:
    """Score frames with a shadow version: points only, never alerts.

    Returns
    -------
    lines : str
        ``lineguard_score`` line protocol tagged with the shadow's
        ``model_version`` and ``role=shadow``.
    state : ScoringState
        The shadow's state for its next batch.
    counts : dict
        ``frames`` and ``alerted`` (frames its debounced flag would have set).
    """
    k, n = bundle.debounce
    result, new_state = score_batch(
        bundle.pipeline, X, state, threshold=bundle.threshold, k=k, n=n, time_us=time_us
    )
    tags = {
        "site": site,
        "line": line,
        "model_version": bundle.version,
        SHADOW_TAG[0]: SHADOW_TAG[1],
    }
    encoded = result_points(tags, time_us, result, bundle.threshold, historical, None)
    return encoded, new_state, {"frames": len(time_us), "alerted": int(result.anomaly.sum())}
