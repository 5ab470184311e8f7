"""Nothing lost under faults, on the real broker and InfluxDB.

The scenarios of ``bench/faults.py`` (see :mod:`tests.support.faults`), shorter:
two lines, three SIGKILLs, 8 s outages. Each asserts per frame: every frame
sent has its score point in InfluxDB, no extra points, no incident twice,
every bad record dead-lettered, and the worker still running.
"""

from __future__ import annotations

import pytest

from tests.support.faults import FaultRig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Where the lines' models are trained once for the module."""
    return tmp_path_factory.mktemp("faults")


@pytest.fixture
def rig(proxied_stack, trained):
    # A rig per test (its own topics, database, workers); the models trained
    # once. The InfluxDB test restarts influxd and waits for /ping, so the
    # next test meets a serving InfluxDB, whatever ran before it.
    assert proxied_stack.influx.running, "InfluxDB left stopped by an earlier test"
    return FaultRig(proxied_stack, trained, lines=2)


def _nothing_lost(result) -> None:
    assert result.frames_sent > 0
    assert result.lost == 0, result
    assert result.duplicated == 0, result
    assert result.frames_written == result.frames_sent, result
    assert result.worker_alive, result


def _same_incidents(result) -> None:
    # The incidents of an uninterrupted offline run of the same frames:
    # same ids, bounds, frame counts and final state, none missing or extra.
    assert result.notes["incidents_expected"] > 0, result
    assert result.notes["incidents_differing"] == 0, result.notes


def test_worker_killed_with_sigkill_three_times_loses_and_duplicates_nothing(rig) -> None:
    # Paced so that three restarts (a group join each) fit well inside the replay.
    result = rig.run_worker_kills(kills=3, replay_s=90.0, last_kill_at=0.6)
    _nothing_lost(result)
    killed_at = result.notes["points_when_killed"]
    assert len(killed_at) == 3
    # Every kill landed while the replay was being scored, not after it.
    assert max(killed_at) < result.frames_sent, killed_at
    assert result.incidents > 0  # the labelled faults were tracked across restarts
    _same_incidents(result)


def test_broker_outage_is_buffered_by_the_gateways_and_drained(rig) -> None:
    result = rig.run_broker_outage(outage_s=8.0, replay_s=25.0)
    _nothing_lost(result)
    assert result.notes["gateway_send_failures"] > 0  # the outage was noticed
    assert result.notes["sent_historical"] > 0  # and the late frames marked
    assert result.notes["buffered_left"] == 0
    _same_incidents(result)


def test_influxdb_outage_blocks_commits_with_bounded_retries(rig) -> None:
    outage_s = 8.0
    result = rig.run_influx_outage(outage_s=outage_s, replay_s=25.0)
    _nothing_lost(result)
    retries = result.notes["write_retries"]
    assert retries >= 1
    # Backoff 0.2 s doubling to 10 s: a handful of attempts, not a busy loop.
    assert retries <= 12, retries
    assert result.notes["max_uncommitted_reported"] > 0  # lag was exposed
    _same_incidents(result)


def test_workers_joining_and_leaving_three_times_change_no_result(rig) -> None:
    # Paced so that three cycles (two group joins each) fit inside the replay.
    result = rig.run_rebalances(cycles=3, replay_s=120.0)
    _nothing_lost(result)
    assert result.notes["workers_left_cleanly"] == 3
    assert result.notes["cycles_during_replay"] == 3, result.notes
    # Every worker was assigned and scored (the first one plus three joiners,
    # and the survivors reassigned after each leave).
    assert result.notes["assignments"] >= 4, result.notes
    _same_incidents(result)


def test_every_bad_record_is_dead_lettered_and_the_worker_stays_up(rig) -> None:
    result = rig.run_bad_input()
    _nothing_lost(result)
    assert result.dead_lettered == result.dead_lettered_expected == result.notes["cases_refused"]
    reasons = " | ".join(result.notes["reasons"])
    for expected in (
        "parse",
        "does not match",
        "ahead of the worker clock",
        "no active model",
        "bytes",
    ):
        assert expected in reasons
