"""Property-based fuzzing of the telemetry decoder (hypothesis).

Whatever bytes arrive, :func:`decode` either returns a batch or raises
:class:`InvalidRecord` (which the worker dead-letters); it never raises
anything else, so bad input can never stop the worker. Valid batches survive
an encode/decode round trip exactly.
"""

from __future__ import annotations

import base64
import json
import math
import struct

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineguard.ingest.contract import (
    BINARY_MAGIC,
    SCHEMA_NAME,
    SCHEMA_V2,
    SCHEMA_V3,
    InvalidRecord,
    TelemetryBatch,
    decode,
    encode,
)

VERSIONS = st.sampled_from([SCHEMA_NAME, SCHEMA_V2, SCHEMA_V3])

IDENT = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
TIME_US = st.integers(946_684_800_000_000, 4_102_444_800_000_000)
READING = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.just(math.nan),
)


def _reference_read(raw: bytes) -> dict:
    """What the bytes say, read with the standard library only (the test's own
    reader of the three documented layouts, not the code under test)."""
    if raw[:4] == b"LGT3":
        _, flags, header_len = struct.unpack_from("<4sB3xI", raw)
        doc = json.loads(raw[12 : 12 + header_len])
        n, width = doc["n_frames"], len(doc["sensors"])
        start = 12 + header_len
        times = list(struct.unpack_from(f"<{n}q", raw, start))
        flat = struct.unpack_from(f"<{n * width}d", raw, start + 8 * n)
        values = [list(flat[i * width : (i + 1) * width]) for i in range(n)]
        historical = bool(flags & 1)
    else:
        doc = json.loads(raw)
        historical = doc["historical"]
        if "values_f64" in doc:
            times = doc["time_us"]
            width = len(doc["sensors"])
            flat = struct.unpack(f"<{len(times) * width}d", base64.b64decode(doc["values_f64"]))
            values = [list(flat[i * width : (i + 1) * width]) for i in range(len(times))]
        else:
            times = [frame["time_us"] for frame in doc["frames"]]
            values = [
                [math.nan if v is None else v for v in frame["values"]] for frame in doc["frames"]
            ]
    return {
        "schema": doc["schema"],
        "ids": (doc["site"], doc["line"], doc["gateway"], doc["seq"]),
        "sensors": tuple(doc["sensors"]),
        "historical": historical,
        "sent_at_us": doc.get("sent_at_us"),
        "time_us": times,
        "values": values,
    }


def _decode_or_refuse(raw: bytes) -> TelemetryBatch | None:
    """Decode, or refuse with a reason; a record that decodes must hold exactly
    what its bytes say (a corruption may turn into other valid data, the
    transport's CRC guards against that, but never into data the bytes do not
    hold)."""
    try:
        batch = decode(raw)
    except InvalidRecord as exc:
        assert str(exc)  # a reason for the dead letter
        return None
    want = _reference_read(raw)
    assert batch.schema == want["schema"]
    assert (batch.site, batch.line, batch.gateway, batch.seq) == want["ids"]
    assert batch.sensors == want["sensors"] and batch.historical == want["historical"]
    assert batch.sent_at_us == want["sent_at_us"]
    np.testing.assert_array_equal(batch.time_us, np.asarray(want["time_us"], dtype=np.int64))
    np.testing.assert_array_equal(
        batch.values, np.asarray(want["values"], dtype=np.float64).reshape(batch.values.shape)
    )
    return batch


@st.composite
def batches(draw) -> TelemetryBatch:
    sensors = tuple(draw(st.lists(IDENT, min_size=1, max_size=6, unique=True)))
    n = draw(st.integers(1, 8))
    times = np.array(draw(st.lists(TIME_US, min_size=n, max_size=n)), dtype=np.int64)
    values = np.array(
        draw(
            st.lists(
                st.lists(READING, min_size=len(sensors), max_size=len(sensors)),
                min_size=n,
                max_size=n,
            )
        ),
        dtype=np.float64,
    ).reshape(n, len(sensors))
    return TelemetryBatch(
        site=draw(IDENT),
        line=draw(IDENT),
        gateway=draw(IDENT),
        seq=draw(st.integers(0, 2**53 - 1)),
        sensors=sensors,
        time_us=times,
        values=values,
        historical=draw(st.booleans()),
        sent_at_us=draw(st.one_of(st.none(), st.integers(0, 2**62))),
    )


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@given(st.binary(max_size=2048), st.booleans())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_are_decoded_or_refused_with_a_reason(raw: bytes, binary: bool) -> None:
    _decode_or_refuse(BINARY_MAGIC + raw if binary else raw)


@given(JSON)
@settings(max_examples=300)
def test_arbitrary_json_is_refused_with_a_reason(doc) -> None:
    # stdlib json: it writes integers beyond 64 bits, which a gateway might too.
    assert _decode_or_refuse(json.dumps(doc).encode()) is None


@given(batches(), VERSIONS)
@settings(max_examples=200, deadline=None)
def test_valid_batches_round_trip_exactly(batch: TelemetryBatch, schema: str) -> None:
    back = decode(encode(batch, schema))
    assert back.schema == schema
    assert (back.site, back.line, back.gateway, back.seq) == (
        batch.site,
        batch.line,
        batch.gateway,
        batch.seq,
    )
    assert back.sensors == batch.sensors and back.historical == batch.historical
    assert back.sent_at_us == batch.sent_at_us
    np.testing.assert_array_equal(back.time_us, batch.time_us)
    np.testing.assert_array_equal(back.values, batch.values)  # NaN == NaN here


_MUTATIONS = st.sampled_from(
    [
        ("seq", "17"),
        ("seq", -1),
        ("seq", 1.5),
        ("line", ""),
        ("line", "has space"),
        ("line", "x" * 65),
        ("sensors", []),
        ("sensors", ["a", "a"]),
        ("historical", "yes"),
        ("frames", []),
        ("frames", [{"time_us": 1_600_000_000_000_000}]),
        ("frames", [{"time_us": 1_600_000_000_000_000, "values": ["1.0"]}]),
        ("frames", [{"time_us": 5_000_000_000_000_000, "values": [1.0]}]),
        ("frames", [{"time_us": 1_600_000_000_000_000, "values": [1.0], "x": 1}]),
        ("extra_key", 1),
    ]
)


@given(batches(), _MUTATIONS)
@settings(max_examples=200, deadline=None)
def test_a_valid_record_with_one_bad_field_is_refused(batch: TelemetryBatch, mutation) -> None:
    doc = orjson.loads(encode(batch))
    key, value = mutation
    if key == "frames" and value and "values" in value[0] and len(batch.sensors) != 1:
        value = [{**value[0], "values": value[0]["values"] * len(batch.sensors)}]
    doc[key] = value
    assert _decode_or_refuse(orjson.dumps(doc)) is None


@given(batches())
@settings(max_examples=100, deadline=None)
def test_integral_floats_count_as_integers_and_decode_to_ints(batch: TelemetryBatch) -> None:
    # JSON Schema says 17.0 is an integer; downstream code must still get ints.
    doc = orjson.loads(encode(batch))
    doc["seq"] = float(doc["seq"] % 2**52)
    doc["frames"][0]["time_us"] = float(doc["frames"][0]["time_us"])
    back = decode(orjson.dumps(doc))
    assert type(back.seq) is int and back.seq == int(doc["seq"])
    assert back.time_us.dtype == np.int64 and back.time_us[0] == batch.time_us[0]


@given(batches(), VERSIONS, st.integers(0, 10_000), st.binary(min_size=1, max_size=4))
@settings(max_examples=300, deadline=None)
def test_corrupted_bytes_never_escape_as_another_error(batch, schema, at, junk) -> None:
    raw = bytearray(encode(batch, schema))
    at %= len(raw)
    changed = raw[at : at + len(junk)] != junk
    raw[at : at + len(junk)] = junk
    back = _decode_or_refuse(bytes(raw))
    if back is not None and not changed:
        # Junk equal to what was there: the original batch, exactly.
        assert (back.site, back.line, back.seq, back.sensors) == (
            batch.site,
            batch.line,
            batch.seq,
            batch.sensors,
        )
        np.testing.assert_array_equal(back.values, batch.values)
