"""Property-based round trip of the line-protocol encoder through the REAL
InfluxDB: tags and fields with spaces, commas, equals signs, quotes,
backslashes and unicode come back exactly as written, or the encoder refuses
them up front with ValueError (a name ending in a backslash, a newline in a
name), never corrupting a batch."""

from __future__ import annotations

import itertools
import re
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lineguard.influx import InfluxV1Client, encode_point, quote_ident

pytestmark = pytest.mark.integration

# Weighted towards what line protocol must escape, plus any printable unicode.
_NASTY = st.sampled_from([" ", ",", "=", '"', "'", "\\", "é", "温度", "🙂", "\t", "#", "%"])
_PRINTABLE = st.characters(blacklist_categories=("Cs", "Cc"))
TEXT = st.lists(st.one_of(_NASTY, _PRINTABLE), min_size=1, max_size=16).map("".join)
FIELD_TEXT = st.lists(st.one_of(_NASTY, _PRINTABLE, st.just("\n")), max_size=24).map("".join)
NUMBER = st.floats(allow_nan=False, allow_infinity=False, width=64)
_TIMES = itertools.count(1_600_000_000_000_000_000, 1_000_000_000)


def _uncarriable(text: str) -> bool:
    return text.endswith("\\") or re.search(r'\\[,= "]', text) is not None


def _blank_key(key: str) -> bool:
    return not key.strip() or (key[0].isspace() and key[0] != " ")


@pytest.fixture(scope="module")
def influx(local_stack):
    db = f"fuzz_{uuid.uuid4().hex[:8]}"
    client = InfluxV1Client(local_stack.influx_settings(db))
    client.create_database()
    yield client
    client.close()


@given(
    tag=TEXT,
    text=FIELD_TEXT,
    number=NUMBER,
    field_key=TEXT,
    integer=st.integers(-(2**63), 2**63 - 1),
)
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_tags_and_fields_round_trip_through_influxdb(
    influx, tag, text, number, field_key, integer
) -> None:
    measurement = "fuzz m,1"  # a measurement that itself needs escaping
    time_ns = next(_TIMES)
    fields = {field_key: text, "num": number, "int": integer}
    if field_key in ("num", "int", "time"):
        fields = {"text": text, "num": number, "int": integer}
        field_key = "text"
    try:
        line = encode_point(measurement, {"tag k": tag}, fields, time_ns)
    except ValueError as exc:
        # Refused up front: only what line protocol cannot carry.
        assert tag.endswith("\\") or _uncarriable(field_key) or _blank_key(field_key), exc
        return
    influx.write(line)
    rows = influx.query(
        f"SELECT * FROM {quote_ident(measurement)} WHERE time = {time_ns}", epoch="ns"
    )
    assert len(rows) == 1, (line, rows)
    row = rows[0]
    assert row["tag k"] == tag
    assert row[field_key] == text
    # InfluxDB's JSON prints an integral float without a fraction (1e16 as
    # 10000000000000000), so compare as floats: the stored value is exact.
    assert float(row["num"]) == number
    assert row["int"] == integer
