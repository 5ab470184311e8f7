"""Admission of decoded records: duplicate drop and clock checks, per line.

Kafka delivers at least once, and a gateway that resends after a failed send
(store-and-forward) can put the same record on the topic twice. Each record
carries ``(gateway, seq)``; :class:`SeenSequences` remembers, per line and
gateway, the highest sequence number seen and which of the
:data:`DEDUP_WINDOW` numbers below it were seen, as a bitmask. A record whose
number is in that window and already marked is a duplicate: it is dropped and
counted, not scored again (which would also advance the line's temporal
features and debounce twice). Retries can reorder records, so the check is a
window, not "seq must increase". A number older than the window is accepted:
its points rewrite the same InfluxDB points and incident tracking skips old
frames, so a very late copy is harmless; a gateway whose counter went back by
more than the window (state wiped) is accepted the same way and logged.

The state is a small JSON-friendly dict, kept in the line state the worker
stores in its changelogged table, so it survives restarts and rebalances.

Frames stamped in the future beyond :data:`MAX_FUTURE_S` (gateway clock
skew, a bad RTC) are refused: a single such frame would otherwise move the
line's data time forward and make incident tracking ignore every real frame
until the clock catches up.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["DEDUP_WINDOW", "MAX_FUTURE_S", "SeenSequences", "future_frames_reason"]

log = logging.getLogger(__name__)

#: How many sequence numbers below the highest seen are remembered per
#: (line, gateway). A gateway sends a few records per second per line, so
#: this covers minutes of retried, reordered records.
DEDUP_WINDOW = 1024
#: Frames stamped more than this ahead of the worker's clock are refused.
MAX_FUTURE_S = 300.0
_MASK = (1 << DEDUP_WINDOW) - 1


class SeenSequences:
    """Which ``(gateway, seq)`` a line has already accepted.

    Parameters
    ----------
    state : dict, optional
        Output of :meth:`to_dict`, to resume after a restart.
    """

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        # gateway -> [highest seq, bitmask: bit i set = (highest - i) seen]
        self._gateways: dict[str, list[int]] = {}
        for gateway, (high, mask) in (state or {}).items():
            self._gateways[gateway] = [int(high), int(mask, 16)]

    def admit(self, gateway: str, seq: int) -> bool:
        """Record ``(gateway, seq)``; False when it was already seen (a duplicate)."""
        entry = self._gateways.get(gateway)
        if entry is None:
            self._gateways[gateway] = [seq, 1]
            return True
        high, mask = entry
        if seq > high:
            entry[0] = seq
            entry[1] = ((mask << (seq - high)) | 1) & _MASK
            return True
        age = high - seq
        if age >= DEDUP_WINDOW:
            log.warning(
                "gateway %s: sequence %d is %d below the highest seen (%d), beyond the "
                "duplicate window; accepting it (gateway state reset, or a very late copy)",
                gateway,
                seq,
                age,
                high,
            )
            return True
        bit = 1 << age
        if mask & bit:
            return False
        entry[1] = mask | bit
        return True

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (masks as hex strings)."""
        return {g: [high, format(mask, "x")] for g, (high, mask) in self._gateways.items()}


def future_frames_reason(time_us: np.ndarray, now_us: int) -> str | None:
    """Why a batch's frame times are refused, or None when they are acceptable."""
    if time_us.size == 0:
        return None
    newest = int(time_us.max())
    ahead_s = (newest - now_us) / 1e6
    if ahead_s > MAX_FUTURE_S:
        return (
            f"expected frame times at most {MAX_FUTURE_S:g} s ahead of the worker clock; "
            f"got a frame {ahead_s:.0f} s in the future (gateway clock skew?)"
        )
    return None
