"""Which telemetry offsets a worker may commit: contiguous progress per partition.

Why the worker tracks its own offsets
-------------------------------------
Faust commits the highest offset of an unbroken run of acknowledged records,
and it fills "gaps" in that run by itself: when a record arrives whose
offset is more than one above the last one read, it assumes the offsets in
between do not exist (compacted away, transaction markers) and counts them
as acknowledged. Around a rebalance that assumption is wrong. Records
fetched before the partition was re-seeked to its committed offset can
still be delivered after the seek; the first of them opens a false gap, the
records of that gap -- fetched again by the seek -- are then dropped as
"already read", and the commit jumps over them. In
``tests/stream/test_scale_out.py`` about one run in four lost a few
hundred consumed frames when a second worker joined and the first left;
this race, read from Faust's code, is the mechanism that fits.

So acknowledgement-based commits are off for the telemetry topic, and the
worker commits only what this tracker allows: for each partition, the
offset after the last record of an unbroken run that starts at the
partition's committed offset. A record above that run is not scored (the
partition is re-seeked to the missing offset instead); a record below it
was already taken in this assignment and is skipped. The tracker is pure
bookkeeping, with no I/O: the worker queries committed offsets, seeks and
commits.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

__all__ = ["GAP_ACCEPT_AFTER_S", "RESEEK_EVERY_S", "Admission", "OffsetTracker"]

#: How long records keep arriving above a partition's next offset after it
#: was re-seeked before the gap is taken as real. Apache Kafka leaves real
#: gaps only for transaction markers and compaction, neither of which a
#: telemetry topic written by LineGuard's gateways has; records fetched
#: before the seek are all delivered within one poll, far below this.
GAP_ACCEPT_AFTER_S = 10.0
#: While a gap is open, how often the partition is re-seeked to the missing
#: offset. Faust drops records below the highest offset it has delivered, so
#: a seek issued while stale records are still being delivered can be undone;
#: the next one, after they drained, is not.
RESEEK_EVERY_S = 1.0


class Admission(enum.Enum):
    """What to do with one consumed record."""

    #: The next record of its partition: score it.
    TAKE = "take"
    #: Already taken in this assignment (a re-delivery): acknowledge only.
    SKIP_SEEN = "skip_seen"
    #: Offsets before it are missing: acknowledge only, and re-seek.
    SKIP_GAP = "skip_gap"


@dataclass
class _Partition:
    next_offset: int
    committed: int
    # While records above next_offset arrive: since when, the lowest seen,
    # and when the partition was last re-seeked (None: not yet).
    seek_since: float | None = None
    lowest_above: int | None = None
    last_seek: float | None = None


@dataclass
class OffsetTracker:
    """Per-partition contiguous progress, from the committed offset on.

    Parameters
    ----------
    clock : callable, default=time.monotonic
        Seconds; injectable for tests.
    gap_accept_after_s : float
        See :data:`GAP_ACCEPT_AFTER_S`.
    """

    clock: Callable[[], float] = time.monotonic
    gap_accept_after_s: float = GAP_ACCEPT_AFTER_S
    reseek_every_s: float = RESEEK_EVERY_S
    _partitions: dict[Hashable, _Partition] = field(default_factory=dict)

    def knows(self, tp: Hashable) -> bool:
        """Whether ``tp`` has a starting offset in the current assignment."""
        return tp in self._partitions

    def start(self, tp: Hashable, committed: int) -> None:
        """Begin tracking ``tp`` at its committed offset (the next record to score)."""
        if committed < 0:
            raise ValueError(f"expected a committed offset >= 0 for {tp}; got {committed}")
        self._partitions[tp] = _Partition(next_offset=committed, committed=committed)

    def forget(self, tps: Iterable[Hashable] | None = None) -> None:
        """Stop tracking revoked partitions (all when ``tps`` is None)."""
        if tps is None:
            self._partitions.clear()
            return
        for tp in tps:
            self._partitions.pop(tp, None)

    def admit(self, tp: Hashable, offset: int) -> Admission:
        """Decide about one record, in consumption order.

        Raises
        ------
        KeyError
            If ``tp`` was not :meth:`start`-ed.
        """
        part = self._partitions[tp]
        if offset == part.next_offset:
            part.next_offset += 1
            part.seek_since = part.lowest_above = part.last_seek = None
            return Admission.TAKE
        if offset < part.next_offset:
            return Admission.SKIP_SEEN
        now = self.clock()
        if part.seek_since is None:
            part.seek_since, part.lowest_above = now, offset
            return Admission.SKIP_GAP
        part.lowest_above = min(part.lowest_above or offset, offset)
        if now - part.seek_since >= self.gap_accept_after_s and offset == part.lowest_above:
            # The re-fetch keeps starting above the missing offsets: they do not exist.
            part.next_offset = offset + 1
            part.seek_since = part.lowest_above = part.last_seek = None
            return Admission.TAKE
        return Admission.SKIP_GAP

    def seeks_due(self) -> dict[Hashable, int]:
        """Partitions with missing offsets to re-seek now, with the offset to seek to.

        Marks them as seeked; call it after each batch and periodically, so a
        gap is re-fetched even when no new record arrives.
        """
        now = self.clock()
        due = {}
        for tp, part in self._partitions.items():
            if part.seek_since is None:
                continue
            if part.last_seek is None or now - part.last_seek >= self.reseek_every_s:
                part.last_seek = now
                due[tp] = part.next_offset
        return due

    def gaps(self) -> dict[Hashable, tuple[int, int]]:
        """Open gaps: partition -> (first missing offset, lowest offset seen above it)."""
        return {
            tp: (p.next_offset, p.lowest_above)
            for tp, p in self._partitions.items()
            if p.seek_since is not None and p.lowest_above is not None
        }

    def committable(self) -> dict[Hashable, int]:
        """Partitions whose progress is past their last commit, with the offset to commit."""
        return {
            tp: p.next_offset for tp, p in self._partitions.items() if p.next_offset > p.committed
        }

    def committed(self, offsets: dict[Hashable, int]) -> None:
        """Record that ``offsets`` were committed."""
        for tp, offset in offsets.items():
            part = self._partitions.get(tp)
            if part is not None:
                part.committed = max(part.committed, offset)

    def uncommitted_from(self, highwaters: dict[Hashable, int]) -> int:
        """Records on the broker past the committed offsets (grows while the sink is down)."""
        return sum(
            max(highwaters.get(tp, p.committed) - p.committed, 0)
            for tp, p in self._partitions.items()
        )
