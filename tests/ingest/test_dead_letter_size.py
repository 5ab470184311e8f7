"""An oversized record's dead letter fits the topic and still identifies it."""

from __future__ import annotations

import hashlib

from lineguard.ingest.dead_letter import (
    MAX_DEAD_LETTER_BYTES,
    DeadLetter,
    fit_for_topic,
    from_headers,
)


def test_oversized_values_are_cut_with_size_and_hash_headers() -> None:
    big = b"{" + b"x" * (MAX_DEAD_LETTER_BYTES * 3)
    letter = DeadLetter("too big", "decode", "t", 1, 42, b"line", big)
    fitted, headers = fit_for_topic(letter)
    assert len(fitted.value) == MAX_DEAD_LETTER_BYTES and big.startswith(fitted.value)
    found = dict(headers)
    assert found["lineguard.dlq.original_bytes"] == str(len(big)).encode()
    assert found["lineguard.dlq.original_sha256"] == hashlib.sha256(big).hexdigest().encode()
    back = from_headers(headers, fitted.key, fitted.value)
    assert (back.reason, back.offset, back.key) == ("too big", 42, b"line")


def test_small_values_are_kept_byte_for_byte() -> None:
    letter = DeadLetter("bad", "decode", "t", 0, 1, None, b"{not json")
    fitted, headers = fit_for_topic(letter)
    assert fitted is letter
    assert not any(name.endswith("original_bytes") for name, _ in headers)
