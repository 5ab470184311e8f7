"""The contracts between LineGuard's stages, in one place.

Everything one stage writes and another reads is named here: the InfluxDB
measurements with their tags and fields, the Kafka topics and what each one
carries, the message schema names, and the dead-letter header convention.
The JSON Schemas of the messages sit next to the telemetry schemas in
``ingest/schema/`` (installed as ``lineguard/ingest/schema/``).

A dashboard, a report, the lifecycle, the history reader and the worker's
point builders import these names instead of retyping them, and a test fails
when a dashboard query uses a measurement, tag or field that is not listed
here. This module imports nothing else of the project, so any stage (and any
plant system written in Python) can depend on it alone.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

__all__ = [
    "ALERT_REASONS",
    "ALERT_SCHEMA",
    "ANNOUNCEMENT_SCHEMA",
    "ASSIGNMENT_MEASUREMENT",
    "DEAD_LETTER_HEADERS",
    "DEAD_LETTER_HEADER_PREFIX",
    "DEAD_SENSOR_REASON",
    "FEEDBACK_MEASUREMENT",
    "FEEDBACK_SCHEMA",
    "IMPUTED_MEASUREMENT",
    "INCIDENT_MEASUREMENT",
    "INCIDENT_SCHEMA",
    "MEASUREMENTS",
    "MESSAGE_SCHEMA_FILES",
    "REASONS_FIELD",
    "REASON_FIELD",
    "REASON_SENSOR_FIELD",
    "SCORE_MEASUREMENT",
    "SHADOW_ROLE",
    "TELEMETRY_MEASUREMENT",
    "TELEMETRY_V1",
    "TELEMETRY_V2",
    "TELEMETRY_V3",
    "TOPICS",
    "WORKER_MEASUREMENT",
    "Measurement",
    "Topic",
    "message_schema",
    "schema_dir",
]

# -- InfluxDB measurements ---------------------------------------------------
#: One point per scored frame, written by the scoring worker.
SCORE_MEASUREMENT = "lineguard_score"
#: Raw sensor values as the gateways sent them, written by the archive worker.
TELEMETRY_MEASUREMENT = "lineguard_telemetry"
#: One point per incident at its start, rewritten in place on every update.
INCIDENT_MEASUREMENT = "lineguard_incident"
#: A worker's counters and gauges, every report interval.
WORKER_MEASUREMENT = "lineguard_worker"
#: Per (worker, line, sensor): frames scored with that sensor's reading imputed.
IMPUTED_MEASUREMENT = "lineguard_worker_imputed"
#: One point per partition assignment of a worker: its state restore and the
#: time from assignment to its first stored batch.
ASSIGNMENT_MEASUREMENT = "lineguard_assignment"
#: QA labels (real defect, false alarm, maintenance) over a time range.
FEEDBACK_MEASUREMENT = "lineguard_feedback"
#: Value of the ``role`` tag on a shadow model's score points (active points
#: carry no ``role`` tag).
SHADOW_ROLE = "shadow"

# -- alert reasons ---------------------------------------------------------------
#: Why a frame exceeds, by name: the multivariate score, or the sensor check
#: that fired (freeze, step, relation) or a mode never seen in training.
#: The scorer's codes are indices into ``("",) + ALERT_REASONS``
#: (``lineguard.detectors.sensor_checks.REASONS``; a test holds them equal).
ALERT_REASONS: tuple[str, ...] = ("score", "freeze", "step", "relation", "unseen_mode")
#: The reason of the alert a line raises when a model sensor has no reading
#: in a whole record (dead, or not mapped by the gateway).
DEAD_SENSOR_REASON = "dead_or_unmapped_sensor"
#: Field of ``lineguard_score`` (only on exceeding frames) and of
#: ``lineguard_incident``: a name of :data:`ALERT_REASONS`.
REASON_FIELD = "reason"
#: Field of ``lineguard_incident``: the sensor behind the incident's reason.
REASON_SENSOR_FIELD = "reason_sensor"
#: Field of ``lineguard_incident``: alert frames per reason, ``score:12,freeze:30``.
REASONS_FIELD = "reasons"


@dataclass(frozen=True)
class Measurement:
    """What a measurement holds.

    Attributes
    ----------
    name : str
    tags, fields : frozenset of str
        The tag and field keys the writers use.
    any_fields : bool
        Fields are named by the data (one per sensor of the line), so any
        field name is valid.
    """

    name: str
    tags: frozenset[str]
    fields: frozenset[str]
    any_fields: bool = False


MEASUREMENTS: dict[str, Measurement] = {
    m.name: m
    for m in (
        Measurement(
            SCORE_MEASUREMENT,
            tags=frozenset({"site", "line", "model_version", "role"}),
            # exceed and historical only where true; top_sensors on exceeding
            # or alerted frames; reason on exceeding frames.
            fields=frozenset(
                {
                    "score",
                    "threshold",
                    "anomaly",
                    "exceed",
                    "historical",
                    "top_sensors",
                    REASON_FIELD,
                }
            ),
        ),
        Measurement(
            TELEMETRY_MEASUREMENT,
            tags=frozenset({"site", "line"}),
            fields=frozenset(),
            any_fields=True,
        ),
        Measurement(
            INCIDENT_MEASUREMENT,
            tags=frozenset({"site", "line"}),
            fields=frozenset(
                {
                    "incident_id",
                    "state",
                    "severity",
                    "peak_score",
                    "threshold",
                    "end_us",
                    "duration_s",
                    "frames",
                    "top_sensors",
                    "model_version",
                    REASON_FIELD,
                    REASON_SENSOR_FIELD,
                    REASONS_FIELD,
                }
            ),
        ),
        Measurement(
            WORKER_MEASUREMENT,
            tags=frozenset({"worker", "role"}),
            # Counters restart at zero with a worker; the rest are gauges.
            fields=frozenset(
                {
                    "records",
                    "frames",
                    "dead_letters",
                    "alerts",
                    "incidents",
                    "write_retries",
                    "write_errors",
                    "duplicates",
                    "historical_alerts_suppressed",
                    "batch_ms",
                    "frames_per_s",
                    "lag",
                    "uncommitted",
                    "uptime_s",
                    "models",
                }
            ),
        ),
        Measurement(
            FEEDBACK_MEASUREMENT,
            tags=frozenset({"line", "label"}),
            fields=frozenset({"end_us", "author", "note", "source", "marked_at_us"}),
        ),
    )
}

# -- message schemas -----------------------------------------------------------
TELEMETRY_V1 = "lineguard.telemetry.v1"
TELEMETRY_V2 = "lineguard.telemetry.v2"
TELEMETRY_V3 = "lineguard.telemetry.v3"
ALERT_SCHEMA = "lineguard.alert.v1"
INCIDENT_SCHEMA = "lineguard.incident.v1"
FEEDBACK_SCHEMA = "lineguard.feedback.v1"
ANNOUNCEMENT_SCHEMA = "lineguard.model-announcement.v1"

#: schema name -> JSON Schema file in :func:`schema_dir`. Telemetry v3 is a
#: binary record; its file describes the JSON header.
MESSAGE_SCHEMA_FILES: dict[str, str] = {
    TELEMETRY_V1: "telemetry-v1.schema.json",
    TELEMETRY_V2: "telemetry-v2.schema.json",
    TELEMETRY_V3: "telemetry-v3.schema.json",
    ALERT_SCHEMA: "alert-v1.schema.json",
    INCIDENT_SCHEMA: "incident-v1.schema.json",
    FEEDBACK_SCHEMA: "feedback-v1.schema.json",
    ANNOUNCEMENT_SCHEMA: "model-announcement-v1.schema.json",
}


def schema_dir() -> Path:
    """The folder of the JSON Schemas (``lineguard/ingest/schema`` when installed).

    Found without importing :mod:`lineguard.ingest` itself.
    """
    spec = importlib.util.find_spec("lineguard.ingest")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "schema"
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the JSON Schemas (lineguard/ingest/schema) are not installed")


@cache
def message_schema(name: str) -> dict[str, Any]:
    """The JSON Schema document of a message, by schema name.

    Raises
    ------
    KeyError
        For a name that is not a LineGuard message schema.
    """
    if name not in MESSAGE_SCHEMA_FILES:
        raise KeyError(f"expected one of {sorted(MESSAGE_SCHEMA_FILES)}; got {name!r}")
    return json.loads((schema_dir() / MESSAGE_SCHEMA_FILES[name]).read_text(encoding="utf-8"))


# -- Kafka topics --------------------------------------------------------------
@dataclass(frozen=True)
class Topic:
    """A topic role: its setting, default name, key and what it carries."""

    role: str  # the TopicSettings field / LINEGUARD_TOPIC_<ROLE>
    default: str
    key: str
    carries: tuple[str, ...]  # schema names
    writers: str
    readers: str


TOPICS: dict[str, Topic] = {
    t.role: t
    for t in (
        Topic(
            "telemetry",
            "lineguard.telemetry",
            "line id",
            (TELEMETRY_V1, TELEMETRY_V2, TELEMETRY_V3),
            "gateways",
            "scoring and archive workers",
        ),
        Topic(
            "dead_letter",
            "lineguard.telemetry.dlq",
            "the original key",
            (),
            "workers (any record they cannot read)",
            "operators",
        ),
        Topic("alerts", "lineguard.alerts", "line id", (ALERT_SCHEMA,), "scoring worker", "plant"),
        Topic(
            "incidents",
            "lineguard.incidents",
            "line id",
            (INCIDENT_SCHEMA,),
            "scoring worker",
            "plant systems (MES, paging)",
        ),
        Topic(
            "models",
            "lineguard.models",
            "line id, or <line>/shadow (compacted)",
            (ANNOUNCEMENT_SCHEMA,),
            "`lineguard models` commands",
            "scoring workers",
        ),
        Topic(
            "feedback",
            "lineguard.feedback",
            "line id",
            (FEEDBACK_SCHEMA,),
            "QA tools, the MES, `lineguard feedback`",
            "scoring worker (stores them in lineguard_feedback)",
        ),
    )
}

# -- dead letters --------------------------------------------------------------
#: A dead letter is the original record (key and value unchanged) with these
#: headers, the convention of Kafka Connect's dead-letter queues.
DEAD_LETTER_HEADER_PREFIX = "lineguard.dlq."
#: Header suffixes: why it was refused, which stage refused it, and where the
#: record came from (topic, partition, offset), and when (ISO 8601, UTC).
DEAD_LETTER_HEADERS = ("reason", "stage", "topic", "partition", "offset", "at")
