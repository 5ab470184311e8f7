"""Tests for lineguard.influx: line-protocol encoding and the v1 HTTP clients."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from pydantic import SecretStr

from lineguard.influx import (
    AsyncInfluxV1Client,
    InfluxQueryError,
    InfluxV1Client,
    InfluxWriteError,
    encode_lines,
    encode_point,
    encode_points,
    escape_field_key,
    escape_measurement,
    escape_tag,
    format_field_value,
    quote_ident,
)
from lineguard.settings import InfluxSettings
from lineguard.stack import InfluxServer, LocalStack

# --------------------------------------------------------------------------
# Escaping and encoding (no server)
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("cpu", "cpu"),
        ("my measurement", "my\\ measurement"),
        ("a,b", "a\\,b"),
        ("a=b", "a=b"),  # '=' needs no escape in a measurement
        ('q"uote', 'q"uote'),
        ("back\\slash", "back\\slash"),  # backslashes are kept as they are
        ("temp°C ☃", "temp°C\\ ☃"),
    ],
)
def test_escape_measurement(raw: str, expected: str) -> None:
    assert escape_measurement(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("line 1", "line\\ 1"),
        ("a,b", "a\\,b"),
        ("k=v", "k\\=v"),
        ("a, =b", "a\\,\\ \\=b"),
        ('say "hi"', 'say\\ "hi"'),
        ("C:\\path", "C:\\path"),
        ("x\\,y", "x\\\\,y"),  # literal backslash before an escaped comma
        ("Zürich-☃", "Zürich-☃"),
    ],
)
def test_escape_tag_and_field_key(raw: str, expected: str) -> None:
    assert escape_tag(raw) == expected
    if "\\," in raw:
        # Measured on influxd: a field key with a backslash before an escaped
        # delimiter is answered with HTTP 400, so the encoder refuses it.
        with pytest.raises(ValueError, match="backslash before"):
            escape_field_key(raw)
    else:
        assert escape_field_key(raw) == expected


@pytest.mark.parametrize("bad", ["", "ends\\", "new\nline", "cr\rhere"])
def test_unrepresentable_names_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        escape_tag(bad)
    with pytest.raises(ValueError):
        escape_field_key(bad)
    with pytest.raises(ValueError):
        escape_measurement(bad)


def test_measurement_starting_with_hash_raises() -> None:
    # InfluxDB would read the line as a comment and drop it silently.
    with pytest.raises(ValueError, match="comment"):
        escape_measurement("#cpu")
    assert escape_measurement("cpu#1") == "cpu#1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, "1.5"),
        (1.0, "1.0"),
        (-0.0, "-0.0"),
        (1e-5, "1e-05"),
        (0.1 + 0.2, "0.30000000000000004"),  # shortest exact repr
        (np.float32(0.5), "0.5"),
        (123, "123i"),
        (-9223372036854775808, "-9223372036854775808i"),
        (np.int64(7), "7i"),
        (True, "true"),
        (False, "false"),
        (np.bool_(True), "true"),
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\dir\\", '"C:\\\\dir\\\\"'),
        ("a, b=c", '"a, b=c"'),  # no escaping of , = space inside strings
        ("ünï☃", '"ünï☃"'),
    ],
)
def test_format_field_value(value: object, expected: str) -> None:
    assert format_field_value(value) == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan"), None])
def test_format_field_value_unstorable_is_none(value: object) -> None:
    assert format_field_value(value) is None


def test_format_field_value_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        format_field_value([1, 2])


def test_encode_point_full() -> None:
    line = encode_point(
        "line status",
        {"site": "plant 1", "line": "L,1", "empty": ""},
        {"temp c": 21.5, "count": 3, "ok": True, "note": 'a "b"'},
        1_700_000_000_000_000_000,
    )
    # Tags sorted by key, the empty tag left out.
    assert line == (
        'line\\ status,line=L\\,1,site=plant\\ 1 temp\\ c=21.5,count=3i,ok=true,note="a \\"b\\"" '
        "1700000000000000000"
    )


def test_encode_point_skips_nan_and_drops_empty_point() -> None:
    assert encode_point("m", None, {"a": math.nan, "b": 2.0}, 5) == "m b=2.0 5"
    assert encode_point("m", {"t": "x"}, {"a": math.nan}, 5) == ""
    assert encode_point("m", {}, {"a": 1.0}) == "m a=1.0"


def test_encode_points_matches_encode_point() -> None:
    times = np.array([10, 20, 30], dtype=np.int64)
    fields = {
        "f": np.array([1.5, 2.0, -3.25]),
        "i": np.array([1, 2, 3], dtype=np.int32),
        "b": np.array([True, False, True]),
        "s": ["x", 'q"', "a\\b"],
    }
    tags = {"line": "L 1", "site": "s=1"}
    batch = encode_points("m,x", tags, fields, times)
    expected = [
        encode_point("m,x", tags, {k: v[i] for k, v in fields.items()}, int(times[i]))
        for i in range(3)
    ]
    assert batch == "\n".join(expected)


def test_encode_points_string_columns_with_repeated_values_match_encode_point() -> None:
    # String columns are quoted once per distinct value: repeats, escapes and
    # an object column mixing strings with other types must still come out
    # exactly as the one-point encoder writes each point.
    times = np.arange(6, dtype=np.int64)
    fields = {
        "top": np.array(['a,"b"', 'a,"b"', "c\\d", 'a,"b"', "", "c\\d"], dtype=object),
        "mixed": np.array(["x", 1, "x", None, True, "x"], dtype=object),
        "u": np.array(["p q", "p q", "r", "r", "p q", "r"]),
    }
    batch = encode_points("m", {"line": "L"}, fields, times)
    expected = [
        encode_point("m", {"line": "L"}, {k: v[i] for k, v in fields.items()}, int(times[i]))
        for i in range(6)
    ]
    assert batch == "\n".join(expected)
    assert batch.split("\n")[2] == 'm,line=L top="c\\\\d",mixed="x",u="r" 2'


def test_encode_points_nan_skipped_per_point() -> None:
    times = np.array([1, 2, 3, 4])
    out = encode_points(
        "m",
        {"t": "a"},
        {"x": np.array([1.0, np.nan, np.nan, np.inf]), "y": np.array([np.nan, 2.0, np.nan, 4.0])},
        times,
    )
    # Point 3 has no field left and is dropped; inf is not storable either.
    assert out.split("\n") == ["m,t=a x=1.0 1", "m,t=a y=2.0 2", "m,t=a y=4.0 4"]
    lines = encode_lines("m", {"t": "a"}, {"x": np.array([np.nan, 3.0])}, np.array([1, 2]))
    assert lines == ["m,t=a x=3.0 2"]  # one entry per point left, none for the dropped one
    assert encode_lines("m", None, {"x": np.zeros(0)}, np.zeros(0, dtype=np.int64)) == []


def test_encode_points_with_significant_digits() -> None:
    times = np.array([1, 2, 3])
    scores = np.array([3.141592653589793, 1e-7 / 3, np.nan])
    out = encode_points("m", None, {"s": scores, "t": np.full(3, 1 / 3)}, times, 12)
    # Varying float columns are rounded; constant ones are written exactly.
    assert out.split("\n") == [
        "m s=3.14159265359,t=0.3333333333333333 1",
        "m s=3.33333333333e-08,t=0.3333333333333333 2",
        "m t=0.3333333333333333 3",
    ]
    with pytest.raises(ValueError, match="significant_digits"):
        encode_points("m", None, {"s": scores}, times, 0)


def test_encode_points_object_column_with_none_and_datetime64() -> None:
    times = np.array(["2024-01-01T00:00:00", "2024-01-01T00:00:01"], dtype="datetime64[s]")
    out = encode_points("m", None, {"v": np.array([None, 7], dtype=object)}, times)
    assert out == "m v=7i 1704067201000000000"


def test_encode_points_percent_signs_are_literal() -> None:
    out = encode_points("load%", {"unit": "%d"}, {"pct %s": [50.0]}, np.array([1]))
    assert out == "load%,unit=%d pct\\ %s=50.0 1"


def test_encode_points_validates_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        encode_points("m", None, {"a": [1.0, 2.0]}, np.array([1, 2, 3]))
    assert encode_points("m", None, {"a": []}, np.array([], dtype=np.int64)) == ""


def test_quote_ident() -> None:
    assert quote_ident('my "db"\\x') == '"my \\"db\\"\\\\x"'


def test_client_is_lazy_and_hides_secrets() -> None:
    settings = InfluxSettings(
        url="http://admin:hunter2@127.0.0.1:1",
        username="admin",
        password=SecretStr("hunter2"),
        token=SecretStr("tok-secret"),
    )
    client = InfluxV1Client(settings)
    assert client._client is None  # nothing created in __init__
    text = repr(client) + repr(AsyncInfluxV1Client(settings))
    assert "hunter2" not in text
    assert "tok-secret" not in text
    assert "127.0.0.1:1" in text
    assert client.ping() is False  # nothing listens on port 1
    client.close()


# --------------------------------------------------------------------------
# Against a real influxd
# --------------------------------------------------------------------------


@pytest.fixture
def influx(local_stack: LocalStack) -> Iterator[InfluxV1Client]:
    """A client on a fresh database of the session's InfluxDB."""
    settings = local_stack.influx_settings(database=f"test_{uuid.uuid4().hex[:10]}")
    with InfluxV1Client(settings) as client:
        client.create_database()
        yield client
        client.query(f"DROP DATABASE {quote_ident(settings.database)}", epoch=None)


@pytest.mark.integration
def test_ping_and_create_database_idempotent(influx: InfluxV1Client) -> None:
    assert influx.ping() is True
    influx.create_database()  # second time: no error
    names = {row["name"] for row in influx.query("SHOW DATABASES")}
    assert influx.settings.database in names


@pytest.mark.integration
def test_round_trip_tricky_names_and_values(influx: InfluxV1Client) -> None:
    measurement = "line status, ☃=ok"
    tags = {"site id": "Zürich, plant=1", "path": "C:\\data", "quote": 'say "hi"'}
    fields = {
        "temp, °C": 21.123456789012345,
        "count=n": -42,
        "ok flag": False,
        "note": 'he said "x\\y"\tend, a=b ☃',
        "trailing": "ends with \\",
    }
    t = 1_700_000_000_123_456_789
    influx.write(encode_point(measurement, tags, fields, t))
    rows = influx.query(f"SELECT * FROM {quote_ident(measurement)} GROUP BY *")
    assert len(rows) == 1
    row = rows[0]
    assert row["time"] == t
    for key, value in {**tags, **fields}.items():
        assert row[key] == value, key
        assert type(row[key]) is type(value), key


@pytest.mark.integration
def test_round_trip_batch_with_nan_and_gzip(influx: InfluxV1Client) -> None:
    n = 5000  # large enough that the body is gzip-compressed (> 64 KiB)
    rng = np.random.default_rng(0)
    values = rng.normal(size=n)
    values[::10] = np.nan
    times = 1_700_000_000_000_000_000 + np.arange(n, dtype=np.int64) * 1_000_000
    body = encode_points("sensor", {"line": "L 1"}, {"v": values, "w": values * 2}, times)
    assert len(body.encode()) > 64 * 1024
    influx.write(body)
    rows = influx.query('SELECT "v", "w" FROM "sensor" WHERE "line" = \'L 1\'')
    keep = ~np.isnan(values)
    assert len(rows) == int(keep.sum())
    assert [r["time"] for r in rows] == times[keep].tolist()
    assert [r["v"] for r in rows] == values[keep].tolist()  # floats exact
    assert [r["w"] for r in rows] == (values[keep] * 2).tolist()


@pytest.mark.integration
def test_idempotent_rewrite_last_value_wins(influx: InfluxV1Client) -> None:
    line = encode_point("m", {"line": "L1"}, {"score": 0.25}, 1_000)
    influx.write([line, line])
    influx.write(encode_point("m", {"line": "L1"}, {"score": 0.75}, 1_000))
    rows = influx.query('SELECT "score" FROM "m"')
    assert rows == [{"time": 1_000, "score": 0.75}]


@pytest.mark.integration
def test_query_rows_include_tags_and_precision(influx: InfluxV1Client) -> None:
    influx.write(["m,line=A v=1i 1000000000", "m,line=B v=2i 2000000000"], precision="ns")
    influx.write("m,line=C v=3i 3", precision="s")
    rows = influx.query('SELECT "v" FROM "m" GROUP BY "line"', epoch="s")
    assert sorted((r["line"], r["v"], r["time"]) for r in rows) == [
        ("A", 1, 1),
        ("B", 2, 2),
        ("C", 3, 3),
    ]
    rfc = influx.query('SELECT "v" FROM "m" WHERE "line" = \'A\'', epoch=None)
    assert rfc[0]["time"] == "1970-01-01T00:00:01Z"


@pytest.mark.integration
def test_query_errors_raise(influx: InfluxV1Client) -> None:
    with pytest.raises(InfluxQueryError) as parse_error:
        influx.query("SELEC nothing")
    assert parse_error.value.status == 400
    assert "SELEC" in str(parse_error.value)
    # An error inside the JSON result of a 200 response.
    other = InfluxV1Client(influx.settings.model_copy(update={"database": "no_such_db_lg"}))
    with other, pytest.raises(InfluxQueryError, match="database not found"):
        other.query('SELECT * FROM "m"')


@pytest.mark.integration
def test_write_error_raises_with_status(influx: InfluxV1Client) -> None:
    with pytest.raises(InfluxWriteError) as error:
        influx.write("this is not line protocol")
    assert error.value.status == 400
    assert "expected HTTP 204, got 400" in str(error.value)
    assert "unable to parse" in error.value.body


@pytest.mark.integration
def test_empty_write_sends_nothing(influx: InfluxV1Client) -> None:
    influx.write([])
    influx.write("")
    assert influx.query('SELECT * FROM "m"') == []


@pytest.mark.integration
def test_retention_policy_setting_routes_writes(influx: InfluxV1Client) -> None:
    db = quote_ident(influx.settings.database)
    influx.query(f'CREATE RETENTION POLICY "short" ON {db} DURATION 1h REPLICATION 1', epoch=None)
    settings = influx.settings.model_copy(update={"retention_policy": "short"})
    with InfluxV1Client(settings) as rp_client:
        now_ns = 1_000_000_000 * int(time.time())
        rp_client.write(f"m v=1i {now_ns}")
    assert influx.query(f'SELECT "v" FROM {db}."short"."m"') == [{"time": now_ns, "v": 1}]
    assert influx.query(f'SELECT "v" FROM {db}."autogen"."m"') == []


@pytest.fixture(scope="module")
def auth_influx(tmp_path_factory) -> Iterator[InfluxSettings]:
    """An influxd with HTTP authentication on and one admin user.

    Influx 1.x lets anyone create the first admin; every request after that
    needs credentials.
    """
    with InfluxServer(workdir=tmp_path_factory.mktemp("influx-auth"), auth_enabled=True) as server:
        bootstrap = InfluxSettings(url=server.url, database="authdb")
        with InfluxV1Client(bootstrap) as anonymous:
            anonymous.query(
                f"CREATE USER \"admin\" WITH PASSWORD '{AUTH_PASSWORD}' WITH ALL PRIVILEGES",
                epoch=None,
            )
        yield bootstrap


AUTH_PASSWORD = "s3cret-admin-pw"


@pytest.mark.integration
def test_a_server_with_auth_refuses_missing_or_wrong_credentials(auth_influx) -> None:
    for update in ({}, {"username": "admin", "password": SecretStr("wrong-pw")}):
        with InfluxV1Client(auth_influx.model_copy(update=update)) as client:
            with pytest.raises(InfluxQueryError) as refused:
                client.query("SHOW DATABASES")
            assert refused.value.status == 401, refused.value
            with pytest.raises(InfluxWriteError) as refused_write:
                client.write("auth v=1i 1")
            assert refused_write.value.status == 401
            assert "wrong-pw" not in str(refused.value) + str(refused_write.value)


@pytest.mark.integration
def test_basic_auth_is_accepted_by_a_server_with_auth(auth_influx) -> None:
    settings = auth_influx.model_copy(
        update={"username": "admin", "password": SecretStr(AUTH_PASSWORD)}
    )
    with InfluxV1Client(settings) as client:
        client.create_database()
        client.write("auth v=1i 1")
        assert client.query('SELECT "v" FROM "auth"') == [{"time": 1, "v": 1}]
        users = client.query("SHOW USERS", epoch=None)
    assert [(u["user"], u["admin"]) for u in users] == [("admin", True)]


@pytest.mark.integration
def test_token_auth_reaches_the_servers_auth_check(auth_influx) -> None:
    """``Authorization: Token user:password`` (InfluxDB 1.8+ and 2.x). The
    Debian influxd here is 1.6, which cannot parse that scheme: it answers 401
    "unable to parse authentication credentials" -- the header reached the
    auth check, was not dropped, and the error names no secret."""
    settings = auth_influx.model_copy(update={"token": SecretStr(f"admin:{AUTH_PASSWORD}")})
    with InfluxV1Client(settings) as client, pytest.raises(InfluxQueryError) as refused:
        client.query("SHOW DATABASES", epoch=None)
    assert refused.value.status == 401
    assert "unable to parse authentication credentials" in refused.value.error
    assert AUTH_PASSWORD not in str(refused.value)


@pytest.mark.integration
def test_async_client(influx: InfluxV1Client) -> None:
    async def run() -> list[dict[str, object]]:
        async with AsyncInfluxV1Client(influx.settings) as client:
            assert await client.ping() is True
            await client.create_database()
            await client.write(encode_points("a", {"k": "v"}, {"x": [1.0, 2.0]}, np.array([1, 2])))
            with pytest.raises(InfluxWriteError):
                await client.write("bad")
            with pytest.raises(InfluxQueryError):
                await client.query("SELEC")
            return await client.query('SELECT "x" FROM "a"')

    rows = asyncio.run(run())
    assert [(r["time"], r["x"]) for r in rows] == [(1, 1.0), (2, 2.0)]
