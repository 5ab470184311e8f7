"""The binary telemetry record (v3) written from plain Python lists.

:func:`lineguard.ingest.contract.encode` writes v3 from numpy arrays; this
module writes the same bytes from the lists the live gateway collects, so
that ``lineguard gateway run`` never imports numpy (15 to 20 MB of its
resident memory, for a process that handles a few hundred values a second:
see docs/gateway.md, "Memory"). The record layout is defined here once and
:mod:`lineguard.ingest.contract` imports it:

``prefix (magic, flags, header length) | JSON header padded to 8 bytes |
time_us as little-endian int64 | values as little-endian float64, row-major``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import orjson

from lineguard.contracts import TELEMETRY_V3

__all__ = ["BINARY_MAGIC", "V3_HISTORICAL", "V3_PREFIX", "encode_v3"]

#: First bytes of a v3 record (a JSON record starts with ``{``).
BINARY_MAGIC = b"LGT3"
#: magic, flags, 3 pad bytes, header length (little-endian).
V3_PREFIX = struct.Struct("<4sB3xI")
#: Flag bit: frames buffered during an outage and sent late.
V3_HISTORICAL = 0x01


def encode_v3(
    *,
    site: str,
    line: str,
    gateway: str,
    seq: int,
    sensors: Sequence[str],
    time_us: Sequence[int],
    values: Sequence[Sequence[float]],
    historical: bool = False,
    sent_at_us: int | None = None,
) -> bytes:
    """One v3 telemetry record, byte for byte what ``contract.encode`` writes.

    Parameters
    ----------
    site, line, gateway : str
        Identity of the record (the worker de-duplicates by gateway and seq).
    seq : int
        The gateway's sequence number.
    sensors : sequence of str
        Column names, in the order of each row of ``values``.
    time_us : sequence of int
        Frame times, microseconds since the Unix epoch (UTC).
    values : sequence of sequences of float
        One row per frame, one value per sensor; NaN for a missing reading.
    historical : bool
        Frames buffered during an outage and sent late.
    sent_at_us : int, optional
        Gateway clock at send time.

    Raises
    ------
    ValueError
        A row whose length is not the number of sensors, or an infinity (a
        sensor never reads infinity; NaN is the spelling of a bad reading).
    """
    n, width = len(time_us), len(sensors)
    if len(values) != n or any(len(row) != width for row in values):
        got = [len(row) for row in values]
        raise ValueError(
            f"values must have shape (frames, sensors) = ({n}, {width}); got rows of {got}"
        )
    flat = [v for row in values for v in row]
    if any(map(math.isinf, flat)):
        raise ValueError("values contain an infinity; use NaN (sent as null) for a bad reading")
    # Same keys in the same order as contract._identity + the v3 fields.
    header: dict[str, object] = {
        "schema": TELEMETRY_V3,
        "site": site,
        "line": line,
        "gateway": gateway,
        "seq": int(seq),
        "sensors": list(sensors),
        "n_frames": n,
    }
    if sent_at_us is not None:
        header["sent_at_us"] = int(sent_at_us)
    text = orjson.dumps(header)
    # Spaces (valid trailing JSON whitespace) align the arrays to 8 bytes.
    text += b" " * (-(V3_PREFIX.size + len(text)) % 8)
    return b"".join(
        (
            V3_PREFIX.pack(BINARY_MAGIC, V3_HISTORICAL if historical else 0, len(text)),
            text,
            struct.pack(f"<{n}q", *time_us),
            struct.pack(f"<{n * width}d", *flat),
        )
    )
