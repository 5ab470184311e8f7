"""The list-based v3 encoder writes the numpy encoder's bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lineguard.ingest.contract import SCHEMA_V3, TelemetryBatch, decode, encode
from lineguard.ingest.wire_v3 import encode_v3


@pytest.mark.parametrize(
    ("n", "historical", "sent_at_us"),
    [(0, False, None), (1, True, 1_700_000_000_123_456), (7, False, 5), (300, True, None)],
)
def test_same_bytes_as_the_numpy_encoder(n, historical, sent_at_us):
    rng = np.random.default_rng(n)
    sensors = ("Pressure", "Temperäture", "s2")[: 1 + n % 3]
    time_us = (1_700_000_000 * 10**6 + np.arange(n) * 1_000_000).tolist()
    values = rng.normal(size=(n, len(sensors))).tolist()
    for row in values[::3]:
        row[0] = math.nan
    if n:
        values[-1][-1] = -0.0
    ident = {"site": "s", "line": "l1", "gateway": "gw-1", "seq": 41 + n, "sensors": sensors}
    ours = encode_v3(
        **ident, time_us=time_us, values=values, historical=historical, sent_at_us=sent_at_us
    )
    theirs = encode(
        TelemetryBatch(
            **ident,
            time_us=np.asarray(time_us, dtype=np.int64),
            values=np.asarray(values, dtype=np.float64).reshape(n, len(sensors)),
            historical=historical,
            sent_at_us=sent_at_us,
        ),
        SCHEMA_V3,
    )
    assert ours == theirs
    if n == 0:
        return  # a record needs a frame to be read back (the gateway sends none empty)
    back = decode(ours)
    assert back.time_us.tolist() == time_us
    assert back.historical is historical


def test_an_infinity_or_a_ragged_row_is_refused():
    ident = {"site": "s", "line": "l1", "gateway": "g", "seq": 0, "sensors": ("a", "b")}
    with pytest.raises(ValueError, match="infinity"):
        encode_v3(**ident, time_us=[1], values=[[1.0, math.inf]])
    with pytest.raises(ValueError, match=r"shape \(frames, sensors\) = \(2, 2\)"):
        encode_v3(**ident, time_us=[1, 2], values=[[1.0, 2.0], [3.0]])
