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
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Any

import fastjsonschema
import numpy as np
import orjson

__all__ = [
    "SCHEMA_NAME",
    "InvalidRecord",
    "TelemetryBatch",
    "decode",
    "encode",
    "schema_document",
    "utc_from_us",
]

SCHEMA_NAME = "lineguard.telemetry.v1"
# A record above this size is refused before parsing: it protects the worker's
# memory, and Kafka's default max.message.bytes is about 1 MiB anyway.
MAX_RECORD_BYTES = 8 * 1024 * 1024


class InvalidRecord(ValueError):
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


def schema_document() -> dict[str, Any]:
    """Return the published JSON Schema of the wire format."""
    text = resources.files("lineguard.ingest").joinpath("schema/telemetry-v1.schema.json")
    return json.loads(text.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _validator() -> Any:
    return fastjsonschema.compile(schema_document())


def encode(batch: TelemetryBatch) -> bytes:
    """Serialize a batch to the v1 wire format (UTF-8 JSON).

    NaN values become ``null``; infinities are refused because JSON has no
    spelling for them and a sensor never reads infinity.
    """
    values = np.asarray(batch.values, dtype=np.float64)
    if values.ndim != 2 or values.shape != (batch.n_frames, len(batch.sensors)):
        raise ValueError(
            f"values must have shape (frames, sensors) = ({batch.n_frames}, "
            f"{len(batch.sensors)}); got {values.shape}"
        )
    if np.isinf(values).any():
        raise ValueError("values contain an infinity; use NaN (sent as null) for a bad reading")
    rows = values.tolist()  # NaN stays float('nan'); orjson writes it as null
    frames = [
        {"time_us": int(t), "values": row}
        for t, row in zip(batch.time_us.tolist(), rows, strict=True)
    ]
    doc: dict[str, Any] = {
        "schema": SCHEMA_NAME,
        "site": batch.site,
        "line": batch.line,
        "gateway": batch.gateway,
        "seq": int(batch.seq),
        "historical": bool(batch.historical),
        "sensors": list(batch.sensors),
        "frames": frames,
    }
    if batch.sent_at_us is not None:
        doc["sent_at_us"] = int(batch.sent_at_us)
    return orjson.dumps(doc)


def decode(raw: bytes | bytearray | memoryview | None) -> TelemetryBatch:
    """Parse and validate one record.

    Raises
    ------
    InvalidRecord
        With the reason, when the record is empty, too large, not JSON, does
        not match the schema, or has a frame whose value count differs from
        the sensor count.
    """
    if raw is None or len(raw) == 0:
        raise InvalidRecord("expected a JSON telemetry record; got an empty value")
    if len(raw) > MAX_RECORD_BYTES:
        raise InvalidRecord(
            f"expected a record of at most {MAX_RECORD_BYTES} bytes; got {len(raw)} bytes"
        )
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"expected UTF-8 JSON; could not parse it: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidRecord(f"expected a JSON object; got {type(doc).__name__}")
    if doc.get("schema") != SCHEMA_NAME:
        raise InvalidRecord(f"expected schema {SCHEMA_NAME!r}; got {str(doc.get('schema'))[:80]!r}")
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
        seq=doc["seq"],
        sensors=sensors,
        time_us=time_us,
        values=values,
        historical=doc.get("historical", False),
        sent_at_us=doc.get("sent_at_us"),
    )


def utc_from_us(time_us: int) -> datetime:
    """Timezone-aware UTC datetime of an epoch-microsecond timestamp."""
    return datetime.fromtimestamp(time_us / 1_000_000, tz=timezone.utc)
