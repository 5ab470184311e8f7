"""The columnar wire format (lineguard.telemetry.v2): round trip, validation, schema."""

from __future__ import annotations

import base64

import jsonschema
import numpy as np
import orjson
import pytest

from lineguard.ingest.contract import (
    SCHEMA_NAME,
    SCHEMA_V2,
    InvalidRecord,
    TelemetryBatch,
    decode,
    encode,
    schema_document,
)
from lineguard.ingest.gateway import mark_historical


def make_batch(n: int = 4, sensors: tuple[str, ...] = ("a", "b c", "d=e")) -> TelemetryBatch:
    values = np.arange(n * len(sensors), dtype=float).reshape(n, len(sensors)) / 7
    values[1, 0] = np.nan
    return TelemetryBatch(
        site="plant-1",
        line="line-7",
        gateway="gw-1",
        seq=42,
        sensors=sensors,
        time_us=1_583_748_873_000_000 + np.arange(n, dtype=np.int64) * 1_000_000,
        values=values,
        sent_at_us=1_583_748_880_000_000,
    )


def v2_doc() -> dict:
    return orjson.loads(encode(make_batch(), SCHEMA_V2))


def test_v2_round_trip_equals_v1() -> None:
    batch = make_batch()
    v1, v2 = decode(encode(batch)), decode(encode(batch, SCHEMA_V2))
    assert (v1.schema, v2.schema) == (SCHEMA_NAME, SCHEMA_V2)
    for got in (v1, v2):
        assert (got.site, got.line, got.gateway, got.seq) == ("plant-1", "line-7", "gw-1", 42)
        assert got.sensors == batch.sensors and got.sent_at_us == batch.sent_at_us
        np.testing.assert_array_equal(got.time_us, batch.time_us)
        np.testing.assert_array_equal(got.values, batch.values)  # NaN == NaN here
    assert v2.values.flags.writeable


def test_v2_matches_its_published_schema() -> None:
    schema = schema_document(SCHEMA_V2)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(v2_doc(), schema)
    assert schema["properties"]["schema"]["const"] == SCHEMA_V2


def test_v2_is_smaller_than_v1() -> None:
    batch = make_batch(n=500, sensors=tuple(f"s{i}" for i in range(50)))
    batch.values[:] = np.random.default_rng(0).normal(size=batch.values.shape)
    assert len(encode(batch, SCHEMA_V2)) < 0.7 * len(encode(batch))


def _b64(values: np.ndarray) -> str:
    return base64.b64encode(np.asarray(values, "<f8").tobytes()).decode()


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(values_f64=d["values_f64"][:-8]), "values_f64 holds"),
        (lambda d: d.update(values_f64="!!!" + d["values_f64"]), "base64"),
        (lambda d: d.update(values_f64=_b64(np.full((4, 3), np.inf))), "infinity"),
        (lambda d: d.update(time_us=d["time_us"][:-1]), "expected 3 frames"),
        (lambda d: d["time_us"].__setitem__(0, 12), "time_us"),
        (lambda d: d["time_us"].__setitem__(0, 1.5e15 + 0.5), "time_us"),
        (lambda d: d.pop("values_f64"), "values_f64"),
        (lambda d: d.update(frames=[]), "must not contain"),
        (lambda d: d.update(values_f64=""), "values_f64"),
        (lambda d: d.update(sensors=["a", "a", "b"]), "sensors"),
    ],
)
def test_v2_refuses_malformed_records_with_a_reason(mutate, reason) -> None:
    doc = v2_doc()
    mutate(doc)
    with pytest.raises(InvalidRecord, match=reason):
        decode(orjson.dumps(doc))


def test_v2_records_can_be_marked_historical() -> None:
    flagged = decode(mark_historical(encode(make_batch(), SCHEMA_V2)))
    assert flagged.historical and flagged.schema == SCHEMA_V2


def test_unknown_schema_names_the_known_versions() -> None:
    doc = v2_doc()
    doc["schema"] = "lineguard.telemetry.v9"
    with pytest.raises(InvalidRecord, match=r"v1.*v2.*v3"):
        decode(orjson.dumps(doc))
    with pytest.raises(ValueError, match="schema must be one of"):
        encode(make_batch(), "lineguard.telemetry.v9")
