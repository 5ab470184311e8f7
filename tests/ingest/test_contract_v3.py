"""The binary wire format (lineguard.telemetry.v3): round trip, validation, schema."""

from __future__ import annotations

import struct

import jsonschema
import numpy as np
import orjson
import pytest

from lineguard.ingest.contract import (
    BINARY_MAGIC,
    SCHEMA_NAME,
    SCHEMA_V2,
    SCHEMA_V3,
    InvalidRecord,
    decode,
    encode,
    schema_document,
)
from lineguard.ingest.gateway import mark_historical

from .test_contract_v2 import make_batch


def parts(record: bytes) -> tuple[int, dict, bytes]:
    """(flags, header, arrays) of a v3 record."""
    magic, flags, length = struct.unpack_from("<4sB3xI", record)
    assert magic == BINARY_MAGIC
    return flags, orjson.loads(record[12 : 12 + length]), record[12 + length :]


def build(flags: int, header: dict | bytes, arrays: bytes, pad: bool = True) -> bytes:
    text = header if isinstance(header, bytes) else orjson.dumps(header)
    if pad:
        text += b" " * (-(12 + len(text)) % 8)
    return struct.pack("<4sB3xI", BINARY_MAGIC, flags, len(text)) + text + arrays


def test_v3_round_trip_equals_v1_and_v2() -> None:
    batch = make_batch(n=7)
    decoded = [decode(encode(batch, schema)) for schema in (SCHEMA_NAME, SCHEMA_V2, SCHEMA_V3)]
    assert [d.schema for d in decoded] == [SCHEMA_NAME, SCHEMA_V2, SCHEMA_V3]
    for got in decoded:
        assert (got.site, got.line, got.gateway, got.seq) == ("plant-1", "line-7", "gw-1", 42)
        assert got.sensors == batch.sensors and got.sent_at_us == batch.sent_at_us
        assert not got.historical
        np.testing.assert_array_equal(got.time_us, batch.time_us)
        np.testing.assert_array_equal(got.values, batch.values)  # NaN == NaN here
    v3 = decoded[2]
    assert v3.values.flags.writeable and v3.values.dtype == np.float64
    assert v3.time_us.dtype == np.int64


def test_v3_layout_matches_its_published_schema() -> None:
    schema = schema_document(SCHEMA_V3)
    jsonschema.Draft202012Validator.check_schema(schema)
    batch = make_batch(n=5)
    record = encode(batch, SCHEMA_V3)
    flags, header, arrays = parts(record)
    jsonschema.validate(header, schema)
    assert flags == 0 and header["n_frames"] == 5
    assert (12 + len(record) - len(arrays)) % 8 == 12 % 8  # arrays start 8-aligned
    assert (len(record) - len(arrays)) % 8 == 0
    times = np.frombuffer(arrays[: 5 * 8], "<i8")
    np.testing.assert_array_equal(times, batch.time_us)
    assert len(arrays) == 5 * 8 + 5 * 3 * 8


def test_v3_is_smaller_than_v2() -> None:
    batch = make_batch(n=500, sensors=tuple(f"s{i}" for i in range(50)))
    batch.values[:] = np.random.default_rng(0).normal(size=batch.values.shape)
    assert len(encode(batch, SCHEMA_V3)) < 0.8 * len(encode(batch, SCHEMA_V2))


def test_v3_historical_flag_round_trips_and_can_be_set_on_a_sent_record() -> None:
    batch = make_batch()
    live = encode(batch, SCHEMA_V3)
    flagged = mark_historical(live)
    assert len(flagged) == len(live) and parts(flagged)[0] == 1
    assert decode(flagged).historical and not decode(live).historical
    assert mark_historical(flagged) == flagged
    np.testing.assert_array_equal(decode(flagged).values, batch.values)


def _arrays(n: int = 4, width: int = 3, inf: bool = False, t0: int = 1_583_748_873_000_000):
    values = np.zeros((n, width))
    if inf:
        values[1, 1] = np.inf
    times = t0 + np.arange(n, dtype=np.int64)
    return np.asarray(times, "<i8").tobytes() + values.astype("<f8").tobytes()


def _header(**change) -> dict:
    header = {
        "schema": SCHEMA_V3,
        "site": "plant-1",
        "line": "line-7",
        "gateway": "gw-1",
        "seq": 1,
        "sensors": ["a", "b", "c"],
        "n_frames": 4,
    }
    header.update(change)
    return {k: v for k, v in header.items() if v is not None}


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (BINARY_MAGIC + b"\0\0", "at least 12 bytes"),
        (build(0x02, _header(), _arrays()), "flags"),
        (build(0, b'{"schema": ', _arrays()), "JSON"),
        (build(0, _header(), _arrays(), pad=False), "8-byte boundary"),
        (build(0, b"[1, 2]  ", _arrays()), "JSON object"),
        (build(0, _header(n_frames=5), _arrays()), "expected"),
        (build(0, _header(), _arrays()[:-8]), "expected"),
        (build(0, _header(), _arrays() + b"\0" * 8), "expected"),
        (build(0, _header(n_frames=0), b""), "n_frames"),
        (build(0, _header(seq=None), _arrays()), "seq"),
        (build(0, _header(extra=1), _arrays()), "extra"),
        (build(0, _header(line="bad line"), _arrays()), "line"),
        (build(0, _header(sensors=["a", "a", "b"]), _arrays()), "sensors"),
        (build(0, _header(sensors=["a", "b"]), _arrays()), "expected"),
        (build(0, _header(), _arrays(inf=True)), "infinity"),
        (build(0, _header(), _arrays(t0=12)), "time_us"),
        (build(0, _header(schema=SCHEMA_V2), _arrays()), "schema"),
    ],
)
def test_v3_refuses_malformed_records_with_a_reason(record: bytes, reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        decode(record)


def test_a_valid_hand_built_record_decodes() -> None:
    # The negative cases above differ from this one in one place each.
    batch = decode(build(0, _header(sent_at_us=5), _arrays()))
    assert batch.n_frames == 4 and batch.sensors == ("a", "b", "c") and batch.sent_at_us == 5
