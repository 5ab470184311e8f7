"""lineguard.contracts: the names and message schemas shared between stages.

The messages validated here are the ones the code emits (the worker's
processor over a recorded run with a fault, the incident tracker, the
feedback and announcement builders); tests/stream/test_hot_reload.py
validates the ones that went through the real broker.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import orjson
import pytest

from lineguard.contracts import (
    ALERT_REASONS,
    ALERT_SCHEMA,
    ANNOUNCEMENT_SCHEMA,
    FEEDBACK_SCHEMA,
    INCIDENT_SCHEMA,
    MEASUREMENTS,
    MESSAGE_SCHEMA_FILES,
    TOPICS,
    message_schema,
    schema_dir,
)
from lineguard.dashboards.generate import dashboard_json
from lineguard.dashboards.grafana import dashboard_queries
from lineguard.detectors.sensor_checks import REASONS
from lineguard.ingest.contract import TelemetryBatch, encode
from lineguard.ingest.csv_runs import read_run
from lineguard.models.announce import Announcement
from lineguard.models.feedback import Feedback
from lineguard.models.registry import Registry
from lineguard.models.training import train_line_model
from lineguard.settings import TopicSettings
from lineguard.stream.processor import RawRecord, TelemetryProcessor

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab"


def validate(message: dict, schema: str) -> None:
    """Validate against the published schema (jsonschema, not our decoder)."""
    jsonschema.Draft202012Validator(message_schema(schema)).validate(message)


def test_contracts_import_nothing_else_of_the_project() -> None:
    code = (
        "import sys, lineguard.contracts as c; c.message_schema(c.ALERT_SCHEMA); "
        "print(sorted(m for m in sys.modules if m.startswith('lineguard')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['lineguard', 'lineguard.contracts']"


def test_every_schema_file_is_a_valid_schema_named_by_its_const() -> None:
    files = sorted(p.name for p in schema_dir().glob("*.schema.json"))
    assert files == sorted(MESSAGE_SCHEMA_FILES.values())
    for name in MESSAGE_SCHEMA_FILES:
        doc = message_schema(name)
        jsonschema.Draft202012Validator.check_schema(doc)
        assert doc["properties"]["schema"]["const"] == name


def test_the_topic_settings_defaults_are_the_contract_topics() -> None:
    defaults = TopicSettings().model_dump()
    assert {role: defaults[role] for role in TOPICS} == {r: t.default for r, t in TOPICS.items()}


# -- the dashboards use only contract names -----------------------------------
def contract_violations(query: str) -> list[str]:
    """Measurement, tag and field names of an InfluxQL query that the
    contracts do not list (aliases made with AS and $variables excepted)."""
    measurements = re.findall(r'FROM\s+"([^"]+)"', query)
    aliases = set(re.findall(r'\bAS\s+"([^"]+)"', query, flags=re.IGNORECASE))
    problems = [f"measurement {m!r}" for m in measurements if m not in MEASUREMENTS]
    known = [MEASUREMENTS[m] for m in measurements if m in MEASUREMENTS]
    allowed = set().union(*(m.tags | m.fields for m in known)) if known else set()
    open_fields = any(m.any_fields for m in known)
    for name in set(re.findall(r'"([^"]+)"', query)) - set(measurements) - aliases:
        if name.startswith("$") or name in allowed or (open_fields and name not in allowed):
            continue
        problems.append(f"tag/field {name!r} of {measurements}")
    return problems


def test_the_checker_catches_a_name_outside_the_contracts() -> None:
    assert contract_violations('SELECT "score" FROM "lineguard_score" WHERE "line" = \'a\'') == []
    assert contract_violations('SELECT "score" FROM "lineguard_scores"') != []
    assert contract_violations('SELECT "scroe" FROM "lineguard_score"') == [
        "tag/field 'scroe' of ['lineguard_score']"
    ]
    # A name an inner query defines with AS may be read by the outer one.
    nested = (
        'SELECT count("n") AS "lines" FROM (SELECT count("score") AS "n" '
        'FROM "lineguard_score" GROUP BY "line")'
    )
    assert contract_violations(nested) == []
    assert contract_violations('SELECT "lag" FROM "lineguard_score"') != []


def test_every_dashboard_query_uses_only_contract_names() -> None:
    problems = []
    checked = 0
    for name, dashboard in dashboard_json().items():
        for query in dashboard_queries(dashboard):
            checked += 1
            problems += [f"{name} / {query.where}: {p}" for p in contract_violations(query.query)]
    assert checked > 20
    assert problems == []


# -- the messages the code emits follow their schemas ---------------------------
@pytest.fixture(scope="module")
def processed(tmp_path_factory):
    """A recorded run with a fault through the worker's processor, in two records."""
    run = read_run(SAMPLES / "valve1" / "1.csv")
    registry = Registry(tmp_path_factory.mktemp("registry"))
    train_line_model(registry, run, "valve1-1", rows=400)
    processor = TelemetryProcessor(registry)
    records = []
    for seq, (a, b) in enumerate(((0, len(run) // 2), (len(run) // 2, len(run)))):
        batch = TelemetryBatch(
            site="site-1",
            line="valve1-1",
            gateway="gw-1",
            seq=seq,
            sensors=tuple(run.sensors),
            time_us=run.time_us[a:b],
            values=run.values[a:b],
        )
        records.append(RawRecord(value=encode(batch), key=b"valve1-1", offset=seq))
    return processor.process(records)


def test_the_workers_alert_and_incident_messages_follow_their_schemas(processed) -> None:
    assert processed.alerts and processed.incidents  # the run has a fault
    for _, message in processed.alerts:
        validate(message, ALERT_SCHEMA)
    for _, message in processed.incidents:
        validate(message, INCIDENT_SCHEMA)
    assert {m["event"] for _, m in processed.incidents} >= {"open"}


def test_the_contract_reasons_are_the_scorers_codes_in_order() -> None:
    # Code 0 is "no reason"; code c names ALERT_REASONS[c - 1] everywhere.
    assert ("", *ALERT_REASONS) == REASONS
    for name in (ALERT_SCHEMA, INCIDENT_SCHEMA):
        enum = message_schema(name)["properties"]["reason"]["enum"]
        assert set(ALERT_REASONS) <= set(enum)


def test_raised_alerts_and_incidents_name_their_reason_and_its_sensor(processed) -> None:
    raised = [m for _, m in processed.alerts if m["state"] == "raised"]
    assert raised
    for message in raised:
        assert message["reason"] in ALERT_REASONS
        assert message["reason_sensor"] == message["top_sensors"][0]
    # The incident is named after the reason most of its frames had.
    latest = processed.incidents[-1][1]
    assert latest["reason"] in latest["reasons"]
    assert latest["reasons"][latest["reason"]] == max(latest["reasons"].values())
    assert latest["reason_sensor"]


def test_feedback_and_announcement_messages_follow_their_schemas() -> None:
    feedback = Feedback("valve1-0", "false_alarm", 1_600_000_000_000_000, 1_600_000_060_000_000)
    validate(feedback.to_message(), FEEDBACK_SCHEMA)
    # Other systems may send ISO times instead (parse_feedback accepts both).
    validate(
        {"schema": FEEDBACK_SCHEMA, "line": "l", "label": "maintenance", "start": "2026-01-01Z"},
        FEEDBACK_SCHEMA,
    )
    sha = "ab" * 32
    for action, version in (("promote", "v0002"), ("shadow", "v0003"), ("shadow_stop", None)):
        announcement = Announcement("valve1-0", action, version, sha if version else None)
        validate(orjson.loads(announcement.to_bytes()), ANNOUNCEMENT_SCHEMA)


@pytest.mark.parametrize(
    ("schema", "broken"),
    [
        (ALERT_SCHEMA, {"state": "up"}),
        (ALERT_SCHEMA, {"top_sensors": "a,b"}),
        (ALERT_SCHEMA, {"reason": "gremlins"}),
        (ALERT_SCHEMA, {"reason_sensor": ""}),
        # A dead-sensor alert must name its sensors.
        (ALERT_SCHEMA, {"reason": "dead_or_unmapped_sensor"}),
        (INCIDENT_SCHEMA, {"reasons": {"gremlins": 3}}),
        (INCIDENT_SCHEMA, {"reasons": {"score": 0}}),
        (INCIDENT_SCHEMA, {"severity": "high"}),
        (FEEDBACK_SCHEMA, {"label": "looks_fine"}),
        (ANNOUNCEMENT_SCHEMA, {"action": "promote", "version": None}),
    ],
)
def test_a_message_that_breaks_its_contract_is_refused(processed, schema, broken) -> None:
    good = {
        ALERT_SCHEMA: processed.alerts[0][1],
        INCIDENT_SCHEMA: processed.incidents[0][1],
        FEEDBACK_SCHEMA: Feedback("l", "real_defect", 1, 2).to_message(),
        ANNOUNCEMENT_SCHEMA: orjson.loads(
            Announcement("l", "promote", "v0002", "0" * 64).to_bytes()
        ),
    }[schema]
    validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        validate({**good, **broken}, schema)


def test_a_score_alert_without_its_score_is_refused(processed) -> None:
    good = processed.alerts[0][1]
    for key in ("score", "threshold", "top_sensors"):
        with pytest.raises(jsonschema.ValidationError):
            validate({k: v for k, v in good.items() if k != key}, ALERT_SCHEMA)


def test_messages_written_before_the_reason_fields_still_validate(processed) -> None:
    old_keys = ("reason", "reason_sensor", "reasons")
    for schema, messages in (
        (ALERT_SCHEMA, processed.alerts),
        (INCIDENT_SCHEMA, processed.incidents),
    ):
        for _, message in messages:
            validate({k: v for k, v in message.items() if k not in old_keys}, schema)
