"""The telemetry wire format: round trip, validation, and the published schema."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import orjson
import pytest

from lineguard.ingest.contract import (
    SCHEMA_NAME,
    InvalidRecord,
    TelemetryBatch,
    decode,
    encode,
    schema_document,
)


def make_batch(n: int = 3, sensors: tuple[str, ...] = ("a", "b c", "d=e")) -> TelemetryBatch:
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


def valid_doc() -> dict:
    return orjson.loads(encode(make_batch()))


def test_round_trip_keeps_values_missing_readings_and_order() -> None:
    batch = make_batch()
    back = decode(encode(batch))
    assert back.sensors == batch.sensors
    assert back.line == "line-7" and back.seq == 42 and back.historical is False
    np.testing.assert_array_equal(back.time_us, batch.time_us)
    np.testing.assert_array_equal(back.values, batch.values)  # NaN positions equal too
    assert np.isnan(back.values[1, 0])


def test_encoded_records_validate_against_the_published_schema() -> None:
    jsonschema.validate(valid_doc(), schema_document())


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("line"), "line"),
        (lambda d: d.update(schema="lineguard.telemetry.v0"), "expected schema"),
        (lambda d: d.update(seq=-1), "seq"),
        (lambda d: d.update(seq="7"), "seq"),
        (lambda d: d.update(line="bad line"), "line"),
        (lambda d: d["frames"][0].update(values=[1.0, "2", 3.0]), "values"),
        (lambda d: d["frames"][0].update(values=[1.0, True, 3.0]), "values"),
        (lambda d: d["frames"][0].update(values=[1.0]), "frame 0 has 1 values"),
        (lambda d: d["frames"][0].update(time_us=12), "time_us"),
        (lambda d: d.update(sensors=["a", "a", "b"]), "sensors"),
        (lambda d: d.update(frames=[]), "frames"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
def test_invalid_records_are_refused_with_a_reason(mutate, reason: str) -> None:
    doc = valid_doc()
    mutate(doc)
    with pytest.raises(InvalidRecord, match=reason):
        decode(json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"{not json", "could not parse"),
        (b"[1, 2]", "JSON object"),
        (b'{"schema": "lineguard.telemetry.v1", "frames": [{"time_us": NaN}]}', "parse"),
    ],
)
def test_garbage_is_refused(raw, reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        decode(raw)


def test_infinity_spelled_as_huge_number_is_refused() -> None:
    text = encode(make_batch()).replace(b"0.0,", b"1e999,", 1)
    assert b"1e999" in text
    with pytest.raises(InvalidRecord, match="infinity"):
        decode(text)


def test_oversized_record_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidRecord, match="at most"):
        decode(b" " * (8 * 1024 * 1024 + 1))


def test_schema_and_decoder_agree_on_the_examples() -> None:
    schema = schema_document()
    assert schema["properties"]["schema"]["const"] == SCHEMA_NAME
    doc = valid_doc()
    doc["frames"][0]["values"] = [1.0, "x", 2.0]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
    with pytest.raises(InvalidRecord):
        decode(json.dumps(doc).encode())


def test_encode_refuses_misaligned_values_and_infinities() -> None:
    batch = make_batch()
    with pytest.raises(ValueError, match="shape"):
        encode(TelemetryBatch(**{**batch.__dict__, "values": batch.values[:, :2]}))
    bad = batch.values.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        encode(TelemetryBatch(**{**batch.__dict__, "values": bad}))
