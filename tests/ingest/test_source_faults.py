"""Bad input at the sources: each is a counted outcome, other sensors keep flowing.

The Sparkplug reader is fed real protobuf payloads through its message
handler (the same code path paho's network thread calls); the broker round
trip is covered by tests/ingest/test_live_sources.py.
"""

from __future__ import annotations

import math

import numpy as np

from lineguard.ingest.gateway_config import parse_config
from lineguard.ingest.live import build_sink
from lineguard.ingest.sources import sparkplug_b_pb2 as pb
from lineguard.ingest.sources.sparkplug import SparkplugReader

CONFIG = """\
site = "s1"
gateway_id = "gw1"

[[sources]]
type = "sparkplug"
name = "uns"
host = "127.0.0.1"
group_id = "G"
edge_node = "N"

[lines.l1]

[[sensors]]
line = "l1"
name = "a"
source = "uns"
device = "D"
tag = "A"

[[sensors]]
line = "l1"
name = "b"
source = "uns"
device = "D"
tag = "B"
"""


def _reader():
    config = parse_config(CONFIG)
    sink = build_sink(config)
    return SparkplugReader(config.sources[0], [("D", "A"), ("D", "B")], sink), sink


def _payload(seq: int, metrics: list[dict]) -> bytes:
    p = pb.Payload()
    p.timestamp = 1_700_000_000_000
    p.seq = seq
    for spec in metrics:
        m = p.metrics.add()
        for k, v in spec.items():
            setattr(m, k, v)
    return p.SerializeToString()


def _born(reader) -> None:
    reader.handle("spBv1.0/G/NBIRTH/N", _payload(0, [{"name": "bdSeq", "long_value": 0}]))
    reader.handle(
        "spBv1.0/G/DBIRTH/N/D",
        _payload(
            1,
            [
                {"name": "A", "alias": 1, "datatype": 10, "double_value": 1.0},
                {"name": "B", "alias": 2, "datatype": 10, "double_value": 2.0},
            ],
        ),
    )


def test_ddata_by_alias_reaches_the_line_columns_with_metric_timestamps():
    reader, sink = _reader()
    _born(reader)
    sink.take("l1")
    reader.handle(
        "spBv1.0/G/DDATA/N/D",
        _payload(
            2,
            [
                {"alias": 2, "timestamp": 1_700_000_001_000, "double_value": 5.5},
                {"alias": 1, "timestamp": 1_700_000_001_000, "double_value": 4.5},
            ],
        ),
    )
    got = sink.take("l1")
    assert got.sensor == [1, 0]
    assert got.value == [5.5, 4.5]
    assert got.source_us == [1_700_000_001_000_000] * 2


def test_malformed_payload_is_counted_and_the_next_message_still_flows():
    reader, sink = _reader()
    _born(reader)
    reader.handle("spBv1.0/G/DDATA/N/D", b"\xff\xfe garbage")
    assert sink.faults["malformed_payload"] == 1
    reader.handle("spBv1.0/G/DDATA/N/D", _payload(2, [{"alias": 1, "double_value": 3.0}]))
    assert sink.take("l1").value[-1] == 3.0


def test_seq_gap_is_counted_and_asks_for_a_rebirth():
    reader, sink = _reader()
    _born(reader)
    before = sink.faults["rebirth_requests"]
    reader.handle("spBv1.0/G/DDATA/N/D", _payload(5, [{"alias": 1, "double_value": 3.0}]))
    assert sink.faults["seq_gap"] == 1
    assert sink.faults["rebirth_requests"] == before + 1
    # The message's own data is still good data.
    assert sink.take("l1").value[-1] == 3.0


def test_unknown_alias_is_counted_and_the_known_metrics_flow():
    reader, sink = _reader()
    _born(reader)
    sink.take("l1")
    reader.handle(
        "spBv1.0/G/DDATA/N/D",
        _payload(2, [{"alias": 77, "double_value": 9.0}, {"alias": 1, "double_value": 3.0}]),
    )
    assert sink.faults["unknown_alias"] == 1
    assert sink.take("l1").value == [3.0]


def test_duplicate_birth_is_counted_and_replaces_the_aliases():
    reader, sink = _reader()
    _born(reader)
    reader.handle(
        "spBv1.0/G/DBIRTH/N/D",
        _payload(2, [{"name": "A", "alias": 9, "double_value": 1.0}]),
    )
    assert sink.faults["duplicate_birth"] == 1
    sink.take("l1")
    reader.handle("spBv1.0/G/DDATA/N/D", _payload(3, [{"alias": 9, "double_value": 8.0}]))
    assert sink.take("l1").value == [8.0]


def test_bad_values_become_null_and_are_counted_by_kind():
    reader, sink = _reader()
    _born(reader)
    sink.take("l1")
    reader.handle(
        "spBv1.0/G/DDATA/N/D",
        _payload(
            2,
            [
                {"alias": 1, "string_value": "12.5"},  # wrong type
                {"alias": 2, "is_null": True},  # bad quality
            ],
        ),
    )
    reader.handle(
        "spBv1.0/G/DDATA/N/D",
        _payload(3, [{"alias": 1, "boolean_value": True}, {"alias": 2, "double_value": math.inf}]),
    )
    reader.handle("spBv1.0/G/DDATA/N/D", _payload(4, [{"alias": 1, "double_value": math.nan}]))
    got = sink.take("l1")
    assert np.isnan(got.value).all() and len(got) == 5
    assert sink.faults["wrong_type"] == 2
    assert sink.faults["bad_quality"] == 1
    assert sink.faults["not_finite"] == 2


def test_metric_missing_from_the_birth_is_an_unknown_tag():
    reader, sink = _reader()
    reader.handle("spBv1.0/G/NBIRTH/N", _payload(0, []))
    reader.handle("spBv1.0/G/DBIRTH/N/D", _payload(1, [{"name": "A", "alias": 1}]))
    assert sink.faults["unknown_tag"] == 1


def test_ndeath_marks_the_source_down_until_the_next_birth():
    reader, sink = _reader()
    _born(reader)
    reader.handle("spBv1.0/G/DDATA/N/D", _payload(2, [{"alias": 1, "double_value": 3.0}]))
    reader.handle("spBv1.0/G/NDEATH/N", _payload(0, []))
    assert sink.is_down("uns") and sink.faults["outages"] == 1
    # Both sensors read null from the death on.
    assert np.isnan(sink.take("l1").value[-2:]).all()
    _born(reader)
    assert not sink.is_down("uns") and sink.faults["reconnects"] == 1


def test_unrequested_second_nbirth_is_a_duplicate_a_requested_rebirth_is_not():
    reader, sink = _reader()
    _born(reader)
    reader.handle("spBv1.0/G/NBIRTH/N", _payload(0, [{"name": "bdSeq", "long_value": 0}]))
    assert sink.faults["duplicate_birth"] == 1
    reader._request_rebirth("test", force=True)  # the broker is not connected: dropped
    reader.handle("spBv1.0/G/NBIRTH/N", _payload(0, [{"name": "bdSeq", "long_value": 0}]))
    assert sink.faults["duplicate_birth"] == 1


def test_births_crossing_a_rebirth_request_are_answers_a_late_one_is_a_duplicate():
    """Seen in CI: the node's own start-up NBIRTH crossed the gateway's
    rebirth request, and the answer that followed was counted as a duplicate.
    Every birth soon after a request is an answer; one long after is not."""
    from lineguard.ingest.sources import sparkplug

    reader, sink = _reader()
    reader._request_rebirth("connected", force=True)  # not connected: the publish is dropped
    birth = _payload(0, [{"name": "bdSeq", "long_value": 0}])
    reader.handle("spBv1.0/G/NBIRTH/N", birth)  # the node's own start-up birth
    reader.handle("spBv1.0/G/NBIRTH/N", birth)  # the answer to the request
    assert sink.faults["duplicate_birth"] == 0
    # Long after the request, a second birth without a death is a duplicate again.
    reader._rebirth_asked_at -= sparkplug._REBIRTH_ANSWER_S + 1
    reader.handle("spBv1.0/G/NBIRTH/N", birth)
    assert sink.faults["duplicate_birth"] == 1
