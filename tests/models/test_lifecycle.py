"""Model lifecycle without servers: announcements, the switch between
micro-batches, shadow scoring, refusal of unverified bundles, registry
history and rollback, QA labels, shifts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lineguard.ingest.contract import TelemetryBatch, encode
from lineguard.ingest.csv_runs import read_run
from lineguard.models.announce import (
    Announcement,
    InvalidAnnouncement,
    parse_announcement,
)
from lineguard.models.feedback import (
    FALSE_ALARM,
    MAINTENANCE,
    REAL_DEFECT,
    Feedback,
    InvalidFeedback,
    frame_labels,
    parse_feedback,
)
from lineguard.models.lifecycle import shift_start
from lineguard.models.registry import Registry, RegistryError
from lineguard.models.training import TrainingConfig, train_line_model
from lineguard.stream.model_updates import ModelUpdates, carry_state
from lineguard.stream.processor import RawRecord, TelemetryProcessor

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "data" / "skab" / "valve1" / "0.csv"
LINE = "valve1-0"


@pytest.fixture(scope="module")
def run():
    return read_run(SAMPLE)


@pytest.fixture
def registry(tmp_path, run):
    registry = Registry(tmp_path / "registry")
    train_line_model(registry, run, LINE, rows=400)  # v0001, active
    train_line_model(registry, run, LINE, rows=400, activate=False)  # v0002: same rows
    train_line_model(
        registry, run, LINE, rows=400, config=TrainingConfig(target_far=0.2), activate=False
    )  # v0003: jumpy
    return registry


def records(run, size=25):
    out = []
    for seq, start in enumerate(range(0, len(run), size)):
        batch = TelemetryBatch(
            "site-1",
            LINE,
            "gw",
            seq,
            run.sensors,
            run.time_us[start : start + size],
            run.values[start : start + size],
        )
        out.append(RawRecord(encode(batch), LINE.encode(), "t", 0, seq))
    return out


def announce(updates: ModelUpdates, registry: Registry, action: str, version: str | None):
    sha = registry.manifest(LINE, version)["artifact"]["sha256"] if version else None
    return updates.apply(Announcement(LINE, action, version, sha).to_bytes())


def test_announcements_round_trip_and_bad_ones_are_named() -> None:
    a = Announcement(LINE, "promote", "v0002", "ab" * 32)
    assert a.key == LINE.encode() and a.role == "active"
    assert parse_announcement(a.to_bytes()) == a
    assert Announcement(LINE, "shadow", "v0003", None).key == b"valve1-0/shadow"
    with pytest.raises(InvalidAnnouncement, match="expected schema"):
        parse_announcement(b'{"schema": "other"}')
    with pytest.raises(InvalidAnnouncement, match="expected action"):
        parse_announcement(a.to_bytes().replace(b"promote", b"explode"))
    with pytest.raises(InvalidAnnouncement, match="expected JSON"):
        parse_announcement(b"\xff")
    updates = ModelUpdates()
    assert updates.apply(b"not json") is None and updates.applied == 0


def test_a_promotion_switches_between_micro_batches_and_carries_the_window(registry, run) -> None:
    recs = records(run)
    baseline = TelemetryProcessor(registry)
    expected = np.concatenate([r.score for rec in recs for r in baseline.process([rec]).results])

    updates = ModelUpdates()
    processor = TelemetryProcessor(registry, updates=updates)
    versions, scores, times = [], [], []
    for i, rec in enumerate(recs):
        if i == 20:
            announce(updates, registry, "promote", "v0002")
        outcome = processor.process([rec])
        assert not outcome.dead_letters
        for result in outcome.results:
            versions += [result.model_version] * len(result.time_us)
            scores.append(result.score)
            times.append(result.time_us)
    versions = np.array(versions)
    np.testing.assert_array_equal(np.concatenate(times), run.time_us)  # each frame once
    assert (versions[: 20 * 25] == "v0001").all() and (versions[20 * 25 :] == "v0002").all()
    # v0002 is the same model retrained on the same rows: with the feature
    # window carried over, not one score changes at the switch.
    np.testing.assert_allclose(np.concatenate(scores), expected, rtol=1e-12)


def test_a_tampered_promoted_version_is_refused_and_the_old_one_keeps_scoring(
    registry, run
) -> None:
    artifact = registry.root / LINE / "v0002" / "model.skops"
    data = bytearray(artifact.read_bytes())
    data[-100] ^= 0xFF
    artifact.write_bytes(bytes(data))
    updates = ModelUpdates()
    processor = TelemetryProcessor(registry, updates=updates)
    recs = records(run)
    processor.process(recs[:2])
    announce(updates, registry, "promote", "v0002")
    outcome = processor.process(recs[2:4])
    assert not outcome.dead_letters
    assert {r.model_version for r in outcome.results} == {"v0001"}
    assert updates.active(LINE) is None  # refused once, not retried every batch


def test_an_announced_hash_that_differs_from_the_registry_is_refused(registry, run) -> None:
    updates = ModelUpdates()
    processor = TelemetryProcessor(registry, updates=updates)
    recs = records(run)
    processor.process(recs[:1])
    updates.apply(Announcement(LINE, "promote", "v0002", "0" * 64).to_bytes())
    outcome = processor.process(recs[1:2])
    assert {r.model_version for r in outcome.results} == {"v0001"}


def test_a_shadow_writes_its_own_points_and_never_alerts(registry, run) -> None:
    updates = ModelUpdates()
    processor = TelemetryProcessor(registry, updates=updates)
    announce(updates, registry, "shadow", "v0003")
    alerts, incidents, lines = [], [], []
    for rec in records(run):
        outcome = processor.process([rec])
        alerts += [a for _, a in outcome.alerts]
        incidents += [i for _, i in outcome.incidents]
        lines += "\n".join(outcome.influx_lines).splitlines()
    shadow = [x for x in lines if "model_version=v0003" in x]
    assert len(shadow) == len(run) and all(",role=shadow," in x for x in shadow)
    assert sum("anomaly=true" in x for x in shadow) > 0
    assert alerts and {a["model_version"] for a in alerts} == {"v0001"}
    assert {i["model_version"] for i in incidents} == {"v0001"}
    active = [x for x in lines if x.startswith("lineguard_score,") and "v0001" in x]
    assert len(active) == len(run) and not any("role=" in x for x in active)
    # Stopping the shadow stops its points.
    updates.apply(Announcement(LINE, "shadow_stop", None, None).to_bytes())
    outcome = processor.process(records(run)[:1])
    assert not any("v0003" in x for x in outcome.influx_lines)


def test_carry_state_keeps_context_for_the_same_sensors_only(registry, run) -> None:
    v1, v2 = registry.load(LINE, "v0001"), registry.load(LINE, "v0002")
    from lineguard.detectors.scoring import ScoringState

    state = ScoringState(context=run.values[:20], flags=np.array([True, False, True, True]))
    carried = carry_state(v1, v2, state)
    assert carried is not None and carried.context.shape[0] <= 20
    np.testing.assert_array_equal(carried.flags, state.flags[-(v2.debounce[1] - 1) :])
    assert carry_state(None, v2, state) is None


def test_history_rollback_and_shadow_markers(registry) -> None:
    assert registry.activate(LINE, "v0003", action="promote") == "v0001"
    assert registry.activate(LINE, "v0002", action="promote") == "v0003"
    assert registry.rollback_target(LINE) == "v0003"
    registry.activate(LINE, "v0003", action="rollback")
    assert registry.rollback_target(LINE) == "v0001"
    assert [e["action"] for e in registry.history(LINE)][-3:] == ["promote", "promote", "rollback"]
    registry.set_shadow(LINE, "v0002")
    assert registry.shadow_version(LINE) == "v0002"
    registry.set_shadow(LINE, None)
    assert registry.shadow_version(LINE) is None
    with pytest.raises(RegistryError):
        registry.set_shadow(LINE, "v0042")


def test_feedback_records_are_validated_with_named_errors() -> None:
    ok = parse_feedback(
        b'{"schema": "lineguard.feedback.v1", "line": "l1", "label": "maintenance",'
        b' "start": "2020-03-09T10:00:00Z", "end": "2020-03-09T10:00:10"}'
    )
    assert ok.end_us - ok.start_us == 10_000_000 and ok.source == "kafka"
    for bad, message in [
        (b"[1]", "JSON object"),
        (
            b'{"schema": "lineguard.feedback.v1", "line": "l1", "label": "meh", "start_us": 1}',
            "label",
        ),
        (b'{"schema": "lineguard.feedback.v1", "line": "l1", "label": "maintenance"}', "start"),
        (
            b'{"schema": "lineguard.feedback.v1", "line": "l1", "label": "maintenance",'
            b' "start_us": 5, "end_us": 1}',
            "end >= start",
        ),
        (
            b'{"schema": "lineguard.feedback.v1", "line": "l1", "label": "maintenance",'
            b' "start": "yesterday"}',
            "ISO 8601",
        ),
    ]:
        with pytest.raises(InvalidFeedback, match=message):
            parse_feedback(bad)


def test_frame_labels_let_the_latest_mark_win() -> None:
    t = np.arange(10, dtype=np.int64) * 1_000_000
    labels = frame_labels(
        t,
        [
            Feedback("l", "real_defect", 2_000_000, 6_000_000, marked_at_us=1),
            Feedback("l", "false_alarm", 5_000_000, 6_000_000, marked_at_us=2),
            Feedback("l", "maintenance", 9_000_000, 9_000_000, marked_at_us=3),
        ],
    )
    assert labels.tolist() == [0, 0] + [REAL_DEFECT] * 3 + [FALSE_ALARM] * 2 + [0, 0, MAINTENANCE]


def test_shifts_are_aligned_on_the_origin_hour() -> None:
    hour = 3600 * 1_000_000
    t = np.array([5, 6, 13, 14, 21, 22, 29], dtype=np.int64) * hour
    starts = shift_start(t, hours=8, origin_hour=6) // hour
    assert starts.tolist() == [-2, 6, 6, 14, 14, 22, 22]
