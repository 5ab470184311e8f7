"""The telemetry wire format: one Kafka record = one line's batch of frames.

The format is versioned (``"schema": "lineguard.telemetry.v1"``) and
published as a JSON Schema file (``ingest/schema/telemetry-v1.schema.json``),
so gateways written in any language can produce it. Decoding validates every
record against that same schema, then checks what JSON Schema cannot say
(every frame has one value per sensor). A record that fails raises
:class:`InvalidRecord` with the reason; the worker sends its original bytes to
the dead-letter topic and carries on.

Many frames travel in one record because Kafka's per-record cost, not the
payload, limits a stream worker (see ``../shared/notes/kafka-here.md``).

Version 2 (``lineguard.telemetry.v2``, ``ingest/schema/telemetry-v2.schema.json``)
carries the same batch by column: ``time_us`` as one integer array and the
values as one base64 float64 matrix (``values_f64``). Decoding a v1 record
validates one Python object per reading, which caps a worker near 60k frames/s
at 50 sensors; v2 decodes with a handful of array operations.

Version 3 (``lineguard.telemetry.v3``, ``ingest/schema/telemetry-v3.schema.json``)
is the same columnar batch in binary: a small JSON header (identity, sensor
names, frame count), then the frame times and the values matrix as raw
little-endian arrays that the worker reads in place. v2's base64 decoding was
a fifth of a worker's calculation, and a v3 record is a quarter smaller, which
the broker and the consumer's fetches feel too. The worker accepts all three;
the gateway sends v3.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Any

import fastjsonschema
import numpy as np
import orjson

from lineguard.contracts import TELEMETRY_V1, TELEMETRY_V2, TELEMETRY_V3
from lineguard.errors import DataError
from lineguard.ingest.wire_v3 import BINARY_MAGIC, V3_HISTORICAL, V3_PREFIX

__all__ = [
    "BINARY_MAGIC",
    "SCHEMA_NAME",
    "SCHEMA_V2",
    "SCHEMA_V3",
    "InvalidRecord",
    "TelemetryBatch",
    "decode",
    "encode",
    "schema_document",
    "utc_from_us",
]

SCHEMA_NAME = TELEMETRY_V1
SCHEMA_V2 = TELEMETRY_V2
SCHEMA_V3 = TELEMETRY_V3
_SCHEMA_FILES = {
    SCHEMA_NAME: "telemetry-v1.schema.json",
    SCHEMA_V2: "telemetry-v2.schema.json",
    SCHEMA_V3: "telemetry-v3.schema.json",
}
# The v3 layout (magic, prefix, flag bit) is defined once, in the numpy-free
# encoder the live gateway uses.
_V3_PREFIX = V3_PREFIX
_V3_HISTORICAL = V3_HISTORICAL
# A record above this size is refused before parsing: it protects the worker's
# memory, and Kafka's default max.message.bytes is about 1 MiB anyway.
MAX_RECORD_BYTES = 8 * 1024 * 1024


class InvalidRecord(DataError):
    """A telemetry record that does not follow the wire format.

    The message says what was expected and what arrived; it becomes the
    dead-letter reason.
    """


@dataclass(frozen=True)
class TelemetryBatch:
    """A decoded telemetry record.

    Attributes
    ----------
    site, line, gateway : str
        Where the frames come from.
    seq : int
        The gateway's record sequence number.
    sensors : tuple of str
        Sensor names, the column order of ``values``.
    time_us : ndarray of int64, shape (n,)
        Frame times, microseconds since the Unix epoch (UTC).
    values : ndarray of float64, shape (n, d)
        Sensor values; NaN where a reading is missing.
    historical : bool
        Frames buffered during an outage and sent late.
    sent_at_us : int or None
        Gateway clock at send time.
    """

    site: str
    line: str
    gateway: str
    seq: int
    sensors: tuple[str, ...]
    time_us: np.ndarray
    values: np.ndarray
    historical: bool = False
    sent_at_us: int | None = None
    schema: str = field(default=SCHEMA_NAME)

    @property
    def n_frames(self) -> int:
        """Number of frames in the batch."""
        return int(self.time_us.shape[0])


def schema_document(schema: str = SCHEMA_NAME) -> dict[str, Any]:
    """Return the published JSON Schema of a wire-format version (v1 by default)."""
    text = resources.files("lineguard.ingest").joinpath(f"schema/{_SCHEMA_FILES[schema]}")
    return json.loads(text.read_text(encoding="utf-8"))


@lru_cache(maxsize=4)
def _validator(schema: str = SCHEMA_NAME) -> Any:
    return fastjsonschema.compile(schema_document(schema))


def encode(batch: TelemetryBatch, schema: str = SCHEMA_NAME) -> bytes:
    """Serialize a batch to the wire format: v1 (JSON) unless ``schema`` says v2 or v3.

    NaN values become ``null`` in v1 (NaN in the binary matrix of v2 and v3);
    infinities are refused because JSON has no spelling for them and a
    sensor never reads infinity.
    """
    if schema not in _SCHEMA_FILES:
        raise ValueError(f"schema must be one of {sorted(_SCHEMA_FILES)}; got {schema!r}")
    values = np.asarray(batch.values, dtype=np.float64)
    if values.ndim != 2 or values.shape != (batch.n_frames, len(batch.sensors)):
        raise ValueError(
            f"values must have shape (frames, sensors) = ({batch.n_frames}, "
            f"{len(batch.sensors)}); got {values.shape}"
        )
    if np.isinf(values).any():
        raise ValueError("values contain an infinity; use NaN (sent as null) for a bad reading")
    if schema == SCHEMA_V2:
        return _encode_v2(batch, values)
    if schema == SCHEMA_V3:
        return _encode_v3(batch, values)
    rows = values.tolist()  # NaN stays float('nan'); orjson writes it as null
    frames = [
        {"time_us": int(t), "values": row}
        for t, row in zip(batch.time_us.tolist(), rows, strict=True)
    ]
    doc = _identity(batch, SCHEMA_NAME)
    doc.update(historical=bool(batch.historical), sensors=list(batch.sensors), frames=frames)
    return orjson.dumps(_with_sent_at(doc, batch))


def _identity(batch: TelemetryBatch, schema: str) -> dict[str, Any]:
    """The fields every version starts with, in this order."""
    return {
        "schema": schema,
        "site": batch.site,
        "line": batch.line,
        "gateway": batch.gateway,
        "seq": int(batch.seq),
    }


def _with_sent_at(doc: dict[str, Any], batch: TelemetryBatch) -> dict[str, Any]:
    if batch.sent_at_us is not None:
        doc["sent_at_us"] = int(batch.sent_at_us)
    return doc


def _encode_v2(batch: TelemetryBatch, values: np.ndarray) -> bytes:
    # Key order as in v1 ("historical" right after "seq"): the gateway's
    # mark_historical relies on it, and base64 text cannot contain a quote.
    doc = _identity(batch, SCHEMA_V2)
    doc.update(
        historical=bool(batch.historical),
        sensors=list(batch.sensors),
        time_us=np.asarray(batch.time_us, dtype=np.int64).tolist(),
        values_f64=base64.b64encode(values.astype("<f8").tobytes()).decode("ascii"),
    )
    return orjson.dumps(_with_sent_at(doc, batch))


def _encode_v3(batch: TelemetryBatch, values: np.ndarray) -> bytes:
    header = _identity(batch, SCHEMA_V3)
    header.update(sensors=list(batch.sensors), n_frames=batch.n_frames)
    text = orjson.dumps(_with_sent_at(header, batch))
    # Spaces (valid trailing JSON whitespace) align the arrays to 8 bytes.
    text += b" " * (-(_V3_PREFIX.size + len(text)) % 8)
    flags = _V3_HISTORICAL if batch.historical else 0
    return b"".join(
        (
            _V3_PREFIX.pack(BINARY_MAGIC, flags, len(text)),
            text,
            np.asarray(batch.time_us, dtype="<i8").tobytes(),
            values.astype("<f8", copy=False).tobytes(),
        )
    )


@lru_cache(maxsize=1)
def _v2_parts() -> tuple[Any, Any, int, int]:
    """Validators for v2: the envelope without the per-item rules of ``sensors``
    and ``time_us``, the ``sensors`` rule alone, and the ``time_us`` range.

    The per-item rules cost a Python call per item in fastjsonschema (a
    third of a v2 decode); they are checked below with the same meaning:
    times with a type test and numpy bounds, sensor lists once per distinct
    list (a line sends the same list in every record).
    """
    schema = schema_document(SCHEMA_V2)
    props = schema["properties"]
    sensors_rule = {"$defs": schema.get("$defs", {}), **props["sensors"]}
    items = props["time_us"]["items"]
    envelope = json.loads(json.dumps(schema))
    envelope["properties"]["sensors"] = {"type": "array"}
    envelope["properties"]["time_us"] = {
        k: v for k, v in props["time_us"].items() if k not in ("items", "description")
    }
    return (
        fastjsonschema.compile(envelope),
        fastjsonschema.compile(sensors_rule),
        int(items["minimum"]),
        int(items["maximum"]),
    )


# Sensor lists already found valid (bounded: cleared when it grows large).
_VALID_SENSORS: dict[tuple[Any, ...], None] = {}


def _checked_envelope(
    doc: dict[str, Any], envelope: Any, sensors_rule: Any, schema: str
) -> dict[str, Any]:
    """A columnar record's envelope (v2 document, v3 header) checked against ``schema``."""
    try:
        doc = envelope(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidRecord(f"does not match {schema}: {exc.message}") from exc
    _check_sensors(doc["sensors"], sensors_rule, schema)
    return doc


def _decode_v2(doc: dict[str, Any]) -> TelemetryBatch:
    """The columnar record, validated: schema for the envelope, numpy for the matrix."""
    envelope, sensors_rule, _, _ = _v2_parts()
    doc = _checked_envelope(doc, envelope, sensors_rule, SCHEMA_V2)
    sensors = tuple(doc["sensors"])
    times = doc["time_us"]
    # JSON Schema's "integer" (bool is not one); 17.0 would also pass there,
    # but a time with a fraction is refused below either way.
    if not all(type(t) is int for t in times):
        bad = next(t for t in times if type(t) is not int)
        if not (isinstance(bad, float) and bad.is_integer()):
            raise InvalidRecord(f"time_us must hold integers; got {bad!r}")
    try:
        time_us = np.array(times, dtype=np.int64)
    except (OverflowError, ValueError, TypeError) as exc:
        raise InvalidRecord(f"time_us must hold 64-bit integers: {exc}") from exc
    _check_times(time_us)
    try:
        raw_values = base64.b64decode(doc["values_f64"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRecord(f"expected values_f64 as standard base64; got: {exc}") from exc
    n, width = len(time_us), len(sensors)
    if len(raw_values) != n * width * 8:
        raise InvalidRecord(
            f"values_f64 holds {len(raw_values)} bytes; expected {n} frames x {width} sensors "
            f"x 8 bytes = {n * width * 8}"
        )
    values = np.frombuffer(raw_values, dtype="<f8").astype(np.float64).reshape(n, width)
    return _columnar_batch(doc, sensors, time_us, values, doc.get("historical", False), SCHEMA_V2)


@lru_cache(maxsize=1)
def _v3_parts() -> tuple[Any, Any]:
    """Validators for the v3 header: without the per-item rules of ``sensors``
    (checked once per distinct list, as in v2), and the ``sensors`` rule."""
    schema = schema_document(SCHEMA_V3)
    sensors_rule = {"$defs": schema.get("$defs", {}), **schema["properties"]["sensors"]}
    envelope = json.loads(json.dumps(schema))
    envelope["properties"]["sensors"] = {"type": "array"}
    return fastjsonschema.compile(envelope), fastjsonschema.compile(sensors_rule)


def _check_sensors(sensors: list[Any], rule: Any, schema: str) -> None:
    key = tuple(sensors)
    if key in _VALID_SENSORS:
        return
    try:
        rule(sensors)
    except fastjsonschema.JsonSchemaValueException as exc:
        message = exc.message.replace("data", "data.sensors", 1)
        raise InvalidRecord(f"does not match {schema}: {message}") from exc
    if len(_VALID_SENSORS) > 4096:
        _VALID_SENSORS.clear()
    _VALID_SENSORS[key] = None


def _decode_v3(raw: bytes | bytearray | memoryview) -> TelemetryBatch:
    """The binary record: JSON header validated by schema, arrays read in place."""
    if len(raw) < _V3_PREFIX.size:
        raise InvalidRecord(
            f"expected a {SCHEMA_V3} record of at least {_V3_PREFIX.size} bytes; got {len(raw)}"
        )
    _, flags, header_len = _V3_PREFIX.unpack_from(raw)
    if flags & ~_V3_HISTORICAL:
        raise InvalidRecord(f"{SCHEMA_V3} flags must use bit 0 only; got {flags:#04x}")
    start = _V3_PREFIX.size + header_len
    if start % 8 or start > len(raw):
        raise InvalidRecord(
            f"{SCHEMA_V3} header length {header_len} must end on an 8-byte boundary "
            f"inside the record ({len(raw)} bytes)"
        )
    try:
        header = orjson.loads(bytes(raw[_V3_PREFIX.size : start]))
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"expected a UTF-8 JSON {SCHEMA_V3} header; got: {exc}") from exc
    if not isinstance(header, dict):
        raise InvalidRecord(f"expected the {SCHEMA_V3} header as a JSON object")
    envelope, sensors_rule = _v3_parts()
    header = _checked_envelope(header, envelope, sensors_rule, SCHEMA_V3)
    sensors = tuple(header["sensors"])
    n, width = int(header["n_frames"]), len(sensors)
    expected = start + n * 8 + n * width * 8
    if len(raw) != expected:
        raise InvalidRecord(
            f"{SCHEMA_V3} record holds {len(raw)} bytes; expected {expected}: the header, "
            f"{n} frame times and {n} frames x {width} sensors of 8 bytes each"
        )
    time_us = np.frombuffer(raw, dtype="<i8", count=n, offset=start).astype(np.int64)
    _check_times(time_us)
    values = (
        np.frombuffer(raw, dtype="<f8", count=n * width, offset=start + n * 8)
        .astype(np.float64)
        .reshape(n, width)
    )
    historical = bool(flags & _V3_HISTORICAL)
    return _columnar_batch(header, sensors, time_us, values, historical, SCHEMA_V3)


def _check_times(time_us: np.ndarray) -> None:
    _, _, t_min, t_max = _v2_parts()
    if time_us.min() < t_min or time_us.max() > t_max:
        raise InvalidRecord(
            f"time_us must lie in [{t_min}, {t_max}] (2000-01-01 to 2100-01-01 UTC); "
            f"got {int(time_us.min())}..{int(time_us.max())}"
        )


def _columnar_batch(
    ids: dict[str, Any],
    sensors: tuple[str, ...],
    time_us: np.ndarray,
    values: np.ndarray,
    historical: bool,
    schema: str,
) -> TelemetryBatch:
    """The batch of a v2 or v3 record, once its values are known finite or NaN."""
    if np.isinf(values).any():
        raise InvalidRecord("expected finite sensor values or NaN; got an infinity")
    return TelemetryBatch(
        site=ids["site"],
        line=ids["line"],
        gateway=ids["gateway"],
        seq=int(ids["seq"]),
        sensors=sensors,
        time_us=time_us,
        values=values,
        historical=historical,
        sent_at_us=None if ids.get("sent_at_us") is None else int(ids["sent_at_us"]),
        schema=schema,
    )


def decode(raw: bytes | bytearray | memoryview | None) -> TelemetryBatch:
    """Parse and validate one record.

    Raises
    ------
    InvalidRecord
        With the reason, when the record is empty, too large, neither JSON
        nor a v3 binary record, does not match its schema, or holds a
        different number of values than frames x sensors.
    """
    if raw is None or len(raw) == 0:
        raise InvalidRecord("expected a JSON telemetry record; got an empty value")
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidRecord(
            f"expected a record of at most {MAX_RECORD_BYTES} bytes; got {len(raw)} bytes"
        )
    if bytes(raw[:4]) == BINARY_MAGIC:
        return _decode_v3(raw)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"expected UTF-8 JSON; could not parse it: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidRecord(f"expected a JSON object; got {type(doc).__name__}")
    if doc.get("schema") == SCHEMA_V2:
        return _decode_v2(doc)
    if doc.get("schema") != SCHEMA_NAME:
        raise InvalidRecord(
            f"expected schema {SCHEMA_NAME!r}, {SCHEMA_V2!r} or {SCHEMA_V3!r}; "
            f"got {str(doc.get('schema'))[:80]!r}"
        )
    try:
        doc = _validator()(doc)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise InvalidRecord(f"does not match {SCHEMA_NAME}: {exc.message}") from exc

    sensors = tuple(doc["sensors"])
    frames = doc["frames"]
    width = len(sensors)
    for i, frame in enumerate(frames):
        if len(frame["values"]) != width:
            raise InvalidRecord(
                f"frame {i} has {len(frame['values'])} values; expected one per sensor ({width})"
            )
    time_us = np.fromiter((f["time_us"] for f in frames), dtype=np.int64, count=len(frames))
    # float64 turns JSON null into NaN; schema already rejected non-numbers.
    values = np.array([f["values"] for f in frames], dtype=np.float64).reshape(len(frames), width)
    if not np.isfinite(values[~np.isnan(values)]).all():
        # 1e999 parses to inf in JSON decoders; a sensor cannot read that.
        raise InvalidRecord("expected finite sensor values or null; got an infinity")
    return TelemetryBatch(
        site=doc["site"],
        line=doc["line"],
        gateway=doc["gateway"],
        # JSON Schema counts 17.0 as an integer; keep Python ints downstream.
        seq=int(doc["seq"]),
        sensors=sensors,
        time_us=time_us,
        values=values,
        historical=doc.get("historical", False),
        sent_at_us=None if doc.get("sent_at_us") is None else int(doc["sent_at_us"]),
    )


def utc_from_us(time_us: int) -> datetime:
    """Timezone-aware UTC datetime of an epoch-microsecond timestamp."""
    return datetime.fromtimestamp(time_us / 1_000_000, tz=timezone.utc)
