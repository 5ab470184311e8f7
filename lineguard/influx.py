"""InfluxDB client for the v1 HTTP API, plus a line-protocol encoder.

Why the v1 API: ``/write`` (line protocol), ``/query`` (InfluxQL) and
``/ping`` are served by InfluxDB 1.x natively, by 2.x through its v1
compatibility layer and by 3.x (Core/Enterprise/Cloud), so one small client
covers every InfluxDB a plant may run.

The encoding functions are pure (no I/O) so they can be unit-tested and reused
by anything that batches points. The escaping follows what InfluxDB's parser
actually does (verified against influxd 1.6):

* measurement: ``,`` and space are escaped with a backslash;
* tag keys, tag values, field keys: ``,``, ``=`` and space are escaped;
* string field values are double-quoted, with ``"`` and ``\\`` escaped;
* other backslashes are written as they are (the parser keeps them), so a
  name or tag value that *ends* in a backslash cannot be expressed, nor a
  newline, nor a field key with a backslash right before ``,``, ``=``, space
  or ``"`` (influxd answers 400 or reads it differently), nor a blank field
  key or one starting with a tab; those raise :class:`ValueError` instead of
  corrupting the batch (found by the property test that round-trips points
  through a real influxd, ``tests/lineguard/test_influx_fuzz.py``);
* a measurement starting with ``#`` would be read as a comment line and
  silently dropped, so it raises :class:`ValueError` too;
* line protocol has no NaN or infinity: such float field values are skipped,
  and a point left with no fields is dropped;
* a tag with an empty value is left out (InfluxDB treats it as absent).
"""

from __future__ import annotations

import gzip
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np
import orjson

from lineguard.errors import LineGuardError, ServiceUnreachable
from lineguard.settings import InfluxSettings

__all__ = [
    "GZIP_THRESHOLD_BYTES",
    "AsyncInfluxV1Client",
    "InfluxError",
    "InfluxQueryError",
    "InfluxUnreachable",
    "InfluxV1Client",
    "InfluxWriteError",
    "encode_lines",
    "encode_point",
    "encode_points",
    "escape_field_key",
    "escape_measurement",
    "escape_tag",
    "failure_text",
    "format_field_value",
    "quote_ident",
]

#: Write bodies larger than this are gzip-compressed (``Content-Encoding: gzip``).
GZIP_THRESHOLD_BYTES = 64 * 1024

_PRECISIONS = frozenset({"ns", "u", "ms", "s", "m", "h"})
# How much of a server error body goes into an exception message.
_BODY_LIMIT = 500

_MEASUREMENT_TABLE = str.maketrans({",": "\\,", " ": "\\ "})
_KEY_TABLE = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_STRING_TABLE = str.maketrans({"\\": "\\\\", '"': '\\"'})
_AMBIGUOUS_BACKSLASH = re.compile(r"\\[,= \"]")


# --------------------------------------------------------------------------
# Line protocol encoding (pure functions)
# --------------------------------------------------------------------------


def _check_name(value: str, what: str) -> None:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if "\n" in value or "\r" in value:
        raise ValueError(f"{what} {value!r} contains a newline, which line protocol cannot carry")
    if value.endswith("\\"):
        # The backslash would escape the delimiter that follows it.
        raise ValueError(
            f"{what} {value!r} ends with a backslash, which line protocol cannot carry"
        )


def escape_measurement(name: str) -> str:
    """Escape a measurement name for line protocol.

    Parameters
    ----------
    name : str
        Measurement name; must not be empty, start with ``#``, end with a
        backslash or contain a newline.

    Returns
    -------
    str
        The name with commas and spaces backslash-escaped.

    Raises
    ------
    ValueError
        If the name cannot be represented in line protocol.
    """
    _check_name(name, "measurement")
    if name.startswith("#"):
        # A line starting with '#' is a comment: InfluxDB would drop it silently.
        raise ValueError(f"measurement {name!r} starts with '#', which InfluxDB reads as a comment")
    return name.translate(_MEASUREMENT_TABLE)


def escape_tag(value: str) -> str:
    """Escape a tag key or tag value for line protocol.

    Parameters
    ----------
    value : str
        Tag key or value; must not be empty, end with a backslash or contain
        a newline.

    Returns
    -------
    str
        The text with commas, equals signs and spaces backslash-escaped.

    Raises
    ------
    ValueError
        If the text cannot be represented in line protocol.
    """
    _check_name(value, "tag key/value")
    return value.translate(_KEY_TABLE)


def escape_field_key(key: str) -> str:
    """Escape a field key for line protocol (same rules as tag keys).

    Parameters
    ----------
    key : str
        Field key.

    Returns
    -------
    str
        The key with commas, equals signs and spaces backslash-escaped.

    Raises
    ------
    ValueError
        If the key cannot be represented in line protocol.
    """
    _check_name(key, "field key")
    if _AMBIGUOUS_BACKSLASH.search(key):
        # Measured on influxd: tags round-trip such backslashes, but the
        # field-key scanner fails ("invalid field format") or unescapes them.
        raise ValueError(
            f"field key {key!r} has a backslash before ',', '=', ' ' or '\"', "
            "which line protocol cannot carry unambiguously"
        )
    if not key.strip() or (key[0].isspace() and key[0] != " "):
        # InfluxQL answers a blank column as "val0", and the parser skips a
        # leading tab before the field set: neither would read back as written.
        raise ValueError(f"field key {key!r} is blank or starts with unescapable whitespace")
    return key.translate(_KEY_TABLE)


def _quote_string(value: str) -> str:
    return '"' + value.translate(_STRING_TABLE) + '"'


def format_field_value(value: Any) -> str | None:
    """Format one field value for line protocol.

    Parameters
    ----------
    value : float, int, bool, str or numpy scalar
        The value. ``bool`` becomes ``true``/``false``, integers get the
        ``i`` suffix, strings are quoted with ``"`` and ``\\`` escaped.

    Returns
    -------
    str or None
        The encoded value, or ``None`` when it cannot be stored (``None``,
        NaN or an infinite float) and the field should be skipped.

    Raises
    ------
    TypeError
        For any other type.
    """
    if value is None:
        return None
    # bool before int: bool is a subclass of int.
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return f"{int(value)}i"
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return repr(number) if math.isfinite(number) else None
    if isinstance(value, str):
        return _quote_string(value)
    raise TypeError(f"unsupported field value type {type(value).__name__}: {value!r}")


def _tag_set(tags: Mapping[str, str] | None) -> str:
    if not tags:
        return ""
    # Sorted by key: InfluxDB's documented fast path for series lookup.
    parts = [
        f",{escape_tag(str(k))}={escape_tag(str(v))}"
        for k, v in sorted(tags.items())
        if v is not None and v != ""
    ]
    return "".join(parts)


def encode_point(
    measurement: str,
    tags: Mapping[str, str] | None,
    fields: Mapping[str, Any],
    time_ns: int | None = None,
) -> str:
    """Encode one point as a line of line protocol (without trailing newline).

    Parameters
    ----------
    measurement : str
        Measurement name.
    tags : Mapping[str, str] or None
        Tag set; empty values are left out.
    fields : Mapping[str, Any]
        Field set; values that cannot be stored (NaN, inf, None) are skipped.
    time_ns : int or None
        Timestamp in nanoseconds since the epoch; ``None`` lets the server
        stamp the point.

    Returns
    -------
    str
        The encoded line, or ``""`` if no field was left.
    """
    field_parts = []
    for key, value in fields.items():
        encoded = format_field_value(value)
        if encoded is not None:
            field_parts.append(f"{escape_field_key(key)}={encoded}")
    if not field_parts:
        return ""
    line = f"{escape_measurement(measurement)}{_tag_set(tags)} {','.join(field_parts)}"
    if time_ns is not None:
        line += f" {int(time_ns)}"
    return line


def _column(
    key: str, values: Any, n: int, float_conv: str = "%r"
) -> tuple[str, list[Any], np.ndarray | None]:
    """Prepare one field column: (printf conversion, python values, missing mask)."""
    array = np.asarray(values)
    if array.shape != (n,):
        raise ValueError(f"field {key!r} has shape {array.shape}, expected ({n},) like times_ns")
    kind = array.dtype.kind
    if kind == "f":
        missing = ~np.isfinite(array)
        # %r gives the shortest repr that round-trips the float exactly.
        return float_conv, array.astype(np.float64, copy=False).tolist(), missing
    if kind in "iu":
        return "%di", array.tolist(), None
    if kind == "b":
        return "%s", np.where(array, "true", "false").tolist(), None
    if kind == "U":
        return "%s", _quoted(array.tolist()), None
    if kind == "O":
        items = array.tolist()
        if all(type(v) is str for v in items):
            return "%s", _quoted(items), None
        encoded = [format_field_value(v) for v in items]
        missing = np.fromiter((e is None for e in encoded), dtype=bool, count=n)
        return "%s", encoded, missing
    raise TypeError(f"field {key!r} has unsupported dtype {array.dtype}")


def _quoted(strings: list[str]) -> list[str]:
    """Quoted field values of a string column, each distinct string quoted once.

    String columns repeat a few values (a frame's top sensors, its reason):
    quoting the distinct ones and looking the rest up is about ten times
    faster than quoting every point's.
    """
    memo = {s: _quote_string(s) for s in set(strings)}
    return [memo[s] for s in strings]


def _constant_literal(values: Any, n: int) -> str | None:
    """The encoded value when a numeric/bool column holds one value throughout.

    Such a column (a model's threshold, a batch's historical flag) is written
    into the line template once instead of being formatted per point.
    """
    array = np.asarray(values)
    if n < 2 or array.shape != (n,) or array.dtype.kind not in "biuf":
        return None
    first = array[0]
    if not (array == first).all():
        return None  # also catches NaN (never equal), which takes the normal path
    return format_field_value(first.item())


def encode_points(
    measurement: str,
    tags: Mapping[str, str] | None,
    fields: Mapping[str, Any],
    times_ns: Any,
    significant_digits: int | None = None,
) -> str:
    """Encode many points that share one measurement and tag set.

    This is the fast path for writing a block of sensor readings: the
    measurement and tag set are escaped once, columns are converted with
    numpy, and each line is built with a single ``%`` format.

    Parameters
    ----------
    measurement : str
        Measurement name.
    tags : Mapping[str, str] or None
        Tag set shared by every point.
    fields : Mapping[str, array-like]
        One 1-D array (or list) per field, each as long as ``times_ns``.
        Float columns skip non-finite values point by point; object columns
        skip ``None``. A point left with no field is dropped.
    times_ns : array-like of int or datetime64
        Timestamps in nanoseconds since the epoch.
    significant_digits : int, optional
        Write float columns with this many significant digits instead of the
        shortest text that round-trips exactly (``repr``), which takes about
        half of the encoding time. For derived values such as scores, never
        for raw sensor readings.

    Returns
    -------
    str
        Newline-separated lines (no trailing newline); ``""`` if no point
        was left.
    """
    return "\n".join(encode_lines(measurement, tags, fields, times_ns, significant_digits))


def encode_lines(
    measurement: str,
    tags: Mapping[str, str] | None,
    fields: Mapping[str, Any],
    times_ns: Any,
    significant_digits: int | None = None,
) -> list[str]:
    """:func:`encode_points` as a list, one line per point left (same arguments).

    For a caller that puts lines of several calls in its own order: it saves
    joining the lines into one text and splitting it again.
    """
    if significant_digits is not None and not 1 <= significant_digits <= 17:
        raise ValueError(f"significant_digits must be in 1..17; got {significant_digits!r}")
    float_conv = "%r" if significant_digits is None else f"%.{int(significant_digits)}g"
    times = np.asarray(times_ns)
    if times.dtype.kind == "M":
        times = times.astype("datetime64[ns]").view(np.int64)
    if times.ndim != 1:
        raise ValueError(f"times_ns must be 1-D, got shape {times.shape}")
    n = times.shape[0]
    if n == 0 or not fields:
        return []
    prefix = escape_measurement(measurement) + _tag_set(tags)

    keys: list[str] = []
    convs: list[str] = []
    columns: list[list[Any]] = []
    missing_any: np.ndarray | None = None
    masks: list[np.ndarray | None] = []
    # Field order as given: (key=value text, None) for a column with one value
    # throughout (written into the template once), (None, i) for columns[i].
    order: list[tuple[str | None, int | None]] = []
    for key, values in fields.items():
        literal = _constant_literal(values, n)
        if literal is not None:
            order.append((f"{escape_field_key(key)}={literal}", None))
            continue
        conv, column, missing = _column(key, values, n, float_conv)
        order.append((None, len(columns)))
        keys.append(escape_field_key(key))
        convs.append(conv)
        columns.append(column)
        masks.append(missing)
        if missing is not None and missing.any():
            missing_any = missing.copy() if missing_any is None else missing_any | missing

    # '%' in names would be read as a conversion by the % operator.
    prefix_t = prefix.replace("%", "%%")
    field_t = [
        text.replace("%", "%%") if text is not None else f"{keys[i].replace('%', '%%')}={convs[i]}"
        for text, i in order
    ]
    template = prefix_t + " " + ",".join(field_t) + " %d"
    rows = zip(*columns, times.tolist(), strict=True)
    if missing_any is None:
        return list(map(template.__mod__, rows))

    # Slow path only for the points that have a missing value.
    dirty = missing_any.tolist()
    col_masks = [m.tolist() if m is not None else None for m in masks]
    lines = []
    for i, (row, is_dirty) in enumerate(zip(rows, dirty, strict=True)):
        if not is_dirty:
            lines.append(template % row)
            continue
        parts = []
        for text, j in order:
            if text is not None:
                parts.append(text)
            elif col_masks[j] is None or not col_masks[j][i]:
                parts.append(f"{keys[j]}={convs[j] % row[j]}")
        if parts:
            lines.append(f"{prefix} {','.join(parts)} {row[-1]}")
    return lines


def quote_ident(name: str) -> str:
    """Quote an InfluxQL identifier (database, measurement, tag key).

    Parameters
    ----------
    name : str
        The identifier.

    Returns
    -------
    str
        ``name`` in double quotes, with ``\\`` and ``"`` escaped.
    """
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class InfluxError(LineGuardError):
    """Base class for errors reported by the InfluxDB HTTP API."""


class InfluxWriteError(InfluxError):
    """A ``/write`` request did not return 2xx.

    Attributes
    ----------
    status : int
        HTTP status code received.
    body : str
        Response body (usually ``{"error": "..."}``), possibly truncated.
    """

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(
            f"InfluxDB write failed: expected HTTP 204, got {status}: {_truncate(body)}"
        )


class InfluxQueryError(InfluxError):
    """A ``/query`` request failed, or a statement in it returned an error.

    Attributes
    ----------
    status : int
        HTTP status code received (200 when the error came inside the JSON).
    error : str
        The error message InfluxDB returned.
    query : str
        The InfluxQL that failed.
    """

    def __init__(self, status: int, error: str, query: str) -> None:
        self.status = status
        self.error = error
        self.query = query
        super().__init__(
            f"InfluxDB query failed (HTTP {status}): {_truncate(error)}; query: {_truncate(query)}"
        )


class InfluxUnreachable(InfluxError, ServiceUnreachable):
    """InfluxDB could not be reached, or what answered is not an HTTP server.

    The message names the endpoint (credentials redacted), the setting that
    chose it and what happened instead of an answer, so a user who mistyped
    ``LINEGUARD_INFLUX_URL`` sees which URL was tried.

    Attributes
    ----------
    url : str
        The endpoint, without credentials.
    reason : str
        What happened (connection refused, no answer within the timeout ...).
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"InfluxDB at {url} (LINEGUARD_INFLUX_URL): expected an InfluxDB HTTP API; got {reason}"
        )


def _unreachable(settings: InfluxSettings, exc: httpx.TransportError) -> InfluxUnreachable:
    """The transport failure ``exc`` as one line a user can act on."""
    detail = str(exc) or type(exc).__name__
    # The async transport says only "All connection attempts failed"; the
    # operating system's reason (refused, no route ...) is further down.
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and (cause.errno or cause.strerror):
            detail = os.strerror(cause.errno) if cause.errno else str(cause.strerror)
            break
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.TimeoutException):
        reason = (
            f"no answer within {settings.timeout_s:g} s (LINEGUARD_INFLUX_TIMEOUT_S); "
            "is that InfluxDB's HTTP port?"
        )
    elif isinstance(exc, httpx.ConnectError):
        reason = f"no connection ({detail})"
    elif isinstance(exc, httpx.RemoteProtocolError):
        reason = f"an answer that is not HTTP ({detail}); is that InfluxDB's HTTP port?"
    else:
        reason = f"{type(exc).__name__} ({detail})"
    return InfluxUnreachable(_safe_url(settings.url), reason)


def failure_text(exc: BaseException) -> str:
    """What went wrong, for a log line that already names the endpoint."""
    if isinstance(exc, InfluxUnreachable):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def _transport(settings: InfluxSettings) -> Iterator[None]:
    # httpx's transport errors name neither the URL nor the setting.
    try:
        yield
    except httpx.TransportError as exc:
        raise _unreachable(settings, exc) from exc


def _truncate(text: str) -> str:
    return text if len(text) <= _BODY_LIMIT else text[:_BODY_LIMIT] + "...(truncated)"


# --------------------------------------------------------------------------
# Request building and response parsing, shared by the sync and async clients
# --------------------------------------------------------------------------


def _safe_url(url: str) -> str:
    """The URL without user:password, for reprs and messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _client_kwargs(settings: InfluxSettings) -> dict[str, Any]:
    headers = {"User-Agent": "lineguard"}
    auth: httpx.Auth | None = None
    if settings.token is not None:
        headers["Authorization"] = f"Token {settings.token.get_secret_value()}"
    elif settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        auth = httpx.BasicAuth(settings.username, password)
    return {
        "base_url": settings.url.rstrip("/"),
        "headers": headers,
        "auth": auth,
        "timeout": settings.timeout_s,
    }


def _write_request(
    settings: InfluxSettings, lines: str | bytes | Iterable[str], precision: str
) -> tuple[dict[str, str], dict[str, str], bytes] | None:
    """(params, headers, body) for a write, or None if there is nothing to send."""
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
    if isinstance(lines, bytes):
        body = lines
    elif isinstance(lines, str):
        body = lines.encode()
    else:
        body = "\n".join(line for line in lines if line).encode()
    if not body.strip():
        return None
    params = {"db": settings.database, "precision": precision}
    if settings.retention_policy:
        params["rp"] = settings.retention_policy
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    if len(body) > GZIP_THRESHOLD_BYTES and settings.gzip:
        # Level 1: most of the size win for a fraction of the CPU of level 9.
        body = gzip.compress(body, compresslevel=1)
        headers["Content-Encoding"] = "gzip"
    return params, headers, body


def _check_write(response: httpx.Response) -> None:
    if not response.is_success:
        raise InfluxWriteError(response.status_code, response.text)


def _query_request(
    settings: InfluxSettings, q: str, epoch: str | None
) -> tuple[dict[str, str], dict[str, str]]:
    """(URL params, form data) for a query; q goes in the body (no URL length limit)."""
    params = {"db": settings.database}
    if settings.retention_policy:
        params["rp"] = settings.retention_policy
    if epoch is not None:
        if epoch not in _PRECISIONS:
            raise ValueError(f"epoch must be one of {sorted(_PRECISIONS)} or None, got {epoch!r}")
        params["epoch"] = epoch
    return params, {"q": q}


def _parse_query(response: httpx.Response, q: str) -> list[dict[str, Any]]:
    try:
        payload = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        payload = None
    if not response.is_success or not isinstance(payload, dict):
        error = payload.get("error") if isinstance(payload, dict) else None
        raise InfluxQueryError(response.status_code, str(error or response.text), q)
    if "error" in payload:
        raise InfluxQueryError(response.status_code, str(payload["error"]), q)
    rows: list[dict[str, Any]] = []
    for result in payload.get("results", []):
        if "error" in result:
            raise InfluxQueryError(response.status_code, str(result["error"]), q)
        for series in result.get("series", []):
            columns = series.get("columns", [])
            tags = series.get("tags") or {}
            for values in series.get("values", []):
                row = dict(tags)
                row.update(zip(columns, values, strict=False))
                rows.append(row)
    return rows


# --------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------


class InfluxV1Client:
    """Synchronous client for the InfluxDB v1 HTTP API.

    The HTTP connection pool is created on first use, so constructing a
    client is free and never touches the network.

    Parameters
    ----------
    settings : InfluxSettings
        URL, database, retention policy, credentials and timeout. A token is
        sent as ``Authorization: Token ...``; otherwise username/password go
        as HTTP basic auth.
    """

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(url={_safe_url(self.settings.url)!r}, "
            f"database={self.settings.database!r})"
        )

    @property
    def endpoint(self) -> str:
        """The server's URL without credentials (for logs and messages)."""
        return _safe_url(self.settings.url)

    @property
    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(**_client_kwargs(self.settings))
        return self._client

    def ping(self) -> bool:
        """Return True if the server answers ``/ping`` with 2xx, False otherwise."""
        try:
            return self._http.get("/ping").is_success
        except httpx.HTTPError:
            return False

    def create_database(self) -> None:
        """Create ``settings.database`` if missing (idempotent, InfluxDB 1.x).

        InfluxDB 2.x needs a bucket plus a DBRP mapping instead, and 3.x
        creates databases on first write; there this raises
        :class:`InfluxQueryError`.
        """
        self.query(f"CREATE DATABASE {quote_ident(self.settings.database)}", epoch=None)

    def write(self, lines: str | bytes | Iterable[str], precision: str = "ns") -> None:
        """Write line protocol to ``settings.database``.

        Parameters
        ----------
        lines : str, bytes or iterable of str
            Line protocol; an iterable is joined with newlines (empty
            strings skipped). Nothing is sent if it is empty.
        precision : str
            Timestamp unit: ``ns``, ``u``, ``ms``, ``s``, ``m`` or ``h``.

        Raises
        ------
        InfluxWriteError
            If the server does not answer 2xx.
        InfluxUnreachable
            If nothing answers at ``settings.url`` or what answers is not HTTP.
        """
        request = _write_request(self.settings, lines, precision)
        if request is None:
            return
        params, headers, body = request
        with _transport(self.settings):
            response = self._http.post("/write", params=params, headers=headers, content=body)
        _check_write(response)

    def query(self, q: str, epoch: str | None = "ns") -> list[dict[str, Any]]:
        """Run InfluxQL and return every row of every series as a dict.

        Parameters
        ----------
        q : str
            InfluxQL; several statements may be separated by ``;``.
        epoch : str or None
            Unit of returned timestamps (``ns`` etc.); ``None`` for RFC 3339.

        Returns
        -------
        list of dict
            One dict per row: the series tags plus ``column: value``.

        Raises
        ------
        InfluxQueryError
            On an HTTP error or an ``"error"`` in any statement's result.
        InfluxUnreachable
            If nothing answers at ``settings.url`` or what answers is not HTTP.
        """
        params, data = _query_request(self.settings, q, epoch)
        with _transport(self.settings):
            response = self._http.post("/query", params=params, data=data)
        return _parse_query(response, q)

    def close(self) -> None:
        """Close the connection pool (the client may be used again later)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> InfluxV1Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncInfluxV1Client:
    """Asynchronous client for the InfluxDB v1 HTTP API.

    Same behaviour as :class:`InfluxV1Client`; the ``httpx.AsyncClient`` is
    created on first use inside the running event loop.

    Parameters
    ----------
    settings : InfluxSettings
        URL, database, retention policy, credentials and timeout.
    """

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self._client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(url={_safe_url(self.settings.url)!r}, "
            f"database={self.settings.database!r})"
        )

    @property
    def endpoint(self) -> str:
        """The server's URL without credentials (for logs and messages)."""
        return _safe_url(self.settings.url)

    @property
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(**_client_kwargs(self.settings))
        return self._client

    async def ping(self) -> bool:
        """Return True if the server answers ``/ping`` with 2xx, False otherwise."""
        try:
            return (await self._http.get("/ping")).is_success
        except httpx.HTTPError:
            return False

    async def create_database(self) -> None:
        """Create ``settings.database`` if missing (idempotent, InfluxDB 1.x)."""
        await self.query(f"CREATE DATABASE {quote_ident(self.settings.database)}", epoch=None)

    async def write(self, lines: str | bytes | Iterable[str], precision: str = "ns") -> None:
        """Write line protocol; see :meth:`InfluxV1Client.write`."""
        request = _write_request(self.settings, lines, precision)
        if request is None:
            return
        params, headers, body = request
        with _transport(self.settings):
            response = await self._http.post("/write", params=params, headers=headers, content=body)
        _check_write(response)

    async def query(self, q: str, epoch: str | None = "ns") -> list[dict[str, Any]]:
        """Run InfluxQL; see :meth:`InfluxV1Client.query`."""
        params, data = _query_request(self.settings, q, epoch)
        with _transport(self.settings):
            response = await self._http.post("/query", params=params, data=data)
        return _parse_query(response, q)

    async def close(self) -> None:
        """Close the connection pool (the client may be used again later)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> AsyncInfluxV1Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
