"""The scoring worker's QA-feedback consumer.

Other plant systems (MES, QA tools) publish ``lineguard.feedback.v1`` JSON
records to the feedback topic (see :mod:`lineguard.models.feedback`). A
background thread of the scoring worker consumes them in its own consumer
group (``<worker_id>-feedback``, so several workers share the work), writes
valid labels to InfluxDB (``lineguard_feedback``) and dead-letters invalid
records with the reason, then commits. Writes are idempotent (a label is
keyed by line, label and start time), so a redelivered record is harmless.
It runs beside, not inside, the Faust scoring agent: labels are rare and
must never slow scoring down or change its partition assignment.
"""

from __future__ import annotations

import logging
import threading

from lineguard.influx import InfluxV1Client, InfluxWriteError
from lineguard.ingest.dead_letter import DeadLetter, to_headers
from lineguard.models.feedback import feedback_records
from lineguard.retry import Backoff, retrying, run_until_stopped
from lineguard.settings import Settings
from lineguard.stream.limits import RETRY_FIRST_S, RETRY_MAX_S

__all__ = ["FeedbackConsumer"]

log = logging.getLogger(__name__)

# Labels are rare and off the scoring path: the worker's write backoff, and
# a steady one-second reconnect to the broker.
_WRITE_BACKOFF = Backoff(RETRY_FIRST_S, RETRY_MAX_S)
_RECONNECT = Backoff(1.0, 1.0)


class FeedbackConsumer:
    """Feedback topic -> InfluxDB, in a daemon thread.

    Parameters
    ----------
    settings : Settings
        Broker, InfluxDB, topic names and the worker id (consumer group).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stored = 0
        self.dead_letters = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> FeedbackConsumer:
        """Start consuming."""
        self._thread = threading.Thread(target=self._run, name="lineguard-feedback", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop within one poll."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        # The broker may be restarting: reconnect every second until stopped.
        run_until_stopped("feedback consumer", self._consume, self._stop, _RECONNECT, logger=log)

    def _consume(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer

        s = self.settings
        consumer = producer = None
        try:
            consumer = KafkaConsumer(
                s.topics.feedback,
                group_id=f"{s.worker_id}-feedback",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=6000,
                heartbeat_interval_ms=1000,
                **s.kafka.kafka_python_config(),
            )
            producer = KafkaProducer(acks="all", **s.kafka.kafka_python_config())
            with InfluxV1Client(s.influx) as influx:
                while not self._stop.is_set():
                    batch = consumer.poll(timeout_ms=500, max_records=500)
                    records = [r for rs in batch.values() for r in rs]
                    if not records:
                        continue
                    self._handle(records, influx, producer)
                    consumer.commit()
        finally:
            for client in (consumer, producer):
                if client is not None:
                    try:
                        client.close()
                    except Exception:
                        log.debug("closing a feedback client failed", exc_info=True)

    def _handle(self, records: list, influx: InfluxV1Client, producer: object) -> None:
        lines, invalid = feedback_records([r.value for r in records])
        bad = dict(invalid)
        refused = False
        # Retried until InfluxDB takes the labels (or the consumer stops, and
        # the uncommitted records are read again): a label is never dropped.
        for attempt in retrying(
            "feedback write",
            _WRITE_BACKOFF,
            until=self._stop.is_set,
            sleep=self._stop.wait,
            logger=log,
        ):
            with attempt:
                if not lines:
                    break
                try:
                    influx.write("\n".join(lines), precision="ns")
                except InfluxWriteError as exc:
                    if exc.status != 400:
                        raise
                    # Will never be accepted: dead-letter all.
                    refused = True
                    reason = f"InfluxDB refused the label: {exc}"
                    bad.update({i: reason for i in range(len(records)) if i not in bad})
        self.stored += 0 if refused else len(lines)
        futures = []
        for i, reason in bad.items():
            r = records[i]
            letter = DeadLetter(reason, "feedback", r.topic, r.partition, r.offset, r.key, r.value)
            futures.append(
                producer.send(  # type: ignore[attr-defined]
                    self.settings.topics.dead_letter,
                    key=r.key,
                    value=r.value,
                    headers=to_headers(letter),
                )
            )
            log.warning(
                "dead-lettered feedback %s[%d]@%d: %s", r.topic, r.partition, r.offset, reason
            )
        for future in futures:
            future.get(30)
        self.dead_letters += len(bad)
