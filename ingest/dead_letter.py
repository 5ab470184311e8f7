"""Dead-letter records: bad input is kept, with its reason, never dropped.

A record the worker cannot process goes to the dead-letter topic unchanged:
same key, same value bytes, so it can be inspected and replayed once the
cause is fixed. Why it was refused and where it came from travel in Kafka
headers, the convention Kafka Connect's dead-letter queues use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from lineguard.contracts import DEAD_LETTER_HEADER_PREFIX

__all__ = ["MAX_DEAD_LETTER_BYTES", "DeadLetter", "fit_for_topic", "from_headers", "to_headers"]

HEADER_PREFIX = DEAD_LETTER_HEADER_PREFIX
#: Largest value a dead letter carries. An oversized record is refused
#: *because* it is too big; republishing it whole would fail the same way
#: (producers default to a 1 MB request limit) and block the partition.
MAX_DEAD_LETTER_BYTES = 512 * 1024


@dataclass(frozen=True)
class DeadLetter:
    """Why one record was refused, and where it was read.

    Attributes
    ----------
    reason : str
        What was expected and what arrived.
    stage : str
        Which step refused it: ``decode`` (wire format) or ``route`` (valid,
        but no line model can score it).
    topic, partition, offset
        The record's source position.
    key, value : bytes or None
        The original record, byte for byte.
    """

    reason: str
    stage: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def to_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """Kafka headers describing a dead letter."""
    return [
        (HEADER_PREFIX + "reason", letter.reason.encode("utf-8")[:4096]),
        (HEADER_PREFIX + "stage", letter.stage.encode()),
        (HEADER_PREFIX + "topic", letter.topic.encode()),
        (HEADER_PREFIX + "partition", str(letter.partition).encode()),
        (HEADER_PREFIX + "offset", str(letter.offset).encode()),
        (HEADER_PREFIX + "at", datetime.now(timezone.utc).isoformat().encode()),
    ]


def fit_for_topic(
    letter: DeadLetter, limit: int = MAX_DEAD_LETTER_BYTES
) -> tuple[DeadLetter, list[tuple[str, bytes]]]:
    """The letter and its headers, with the value cut to ``limit`` bytes if larger.

    A cut value keeps its first ``limit`` bytes (enough to see what it was)
    and the headers ``lineguard.dlq.original_bytes`` and
    ``lineguard.dlq.original_sha256`` identify the original, which stays on
    the source topic at the recorded offset until retention removes it.
    """
    value = letter.value
    if value is None or len(value) <= limit:
        return letter, to_headers(letter)
    cut = replace(letter, value=bytes(value[:limit]))
    headers = [
        *to_headers(cut),
        (HEADER_PREFIX + "original_bytes", str(len(value)).encode()),
        (HEADER_PREFIX + "original_sha256", hashlib.sha256(value).hexdigest().encode()),
    ]
    return cut, headers


def from_headers(
    headers: list[tuple[str, bytes]] | dict[str, bytes] | None,
    key: bytes | None,
    value: bytes | None,
) -> DeadLetter:
    """Rebuild a :class:`DeadLetter` from a consumed dead-letter record."""
    items = headers.items() if isinstance(headers, dict) else (headers or [])
    found = {
        name[len(HEADER_PREFIX) :]: raw.decode("utf-8", "replace")
        for name, raw in items
        if name.startswith(HEADER_PREFIX) and raw is not None
    }
    if "reason" not in found:
        raise ValueError(
            f"expected a dead-letter record with a {HEADER_PREFIX}reason header; "
            f"got headers {sorted(found)}"
        )
    return DeadLetter(
        reason=found["reason"],
        stage=found.get("stage", ""),
        topic=found.get("topic", ""),
        partition=int(found.get("partition", -1)),
        offset=int(found.get("offset", -1)),
        key=key,
        value=value,
    )
