"""A synthetic pick-and-place station: a discrete line run in machine cycles.

Each cycle (about 40 rows, its length jittered by a few rows) moves the
axis out to the pick point, closes the vacuum gripper, moves back carrying
the part, and opens the gripper; then the station waits a few rows for the
next part. The servo drive reports the axis position and velocity and the
motor current; the gripper reports its 0/1 vacuum command and the vacuum
pressure.

The motor current is a function of the motion, not a linear one: a base
draw, friction against the direction of travel (``|velocity|``), and the
inertia of the axis and of the part it carries (``|acceleration|``), plus a
small noise. A current wrong *for its place in the cycle* -- a binding
bearing, a dragging cable chain -- leaves the current inside its normal
range and the other readings untouched: it shows only in the current's
relation to the motion.

Used by ``tests/detectors/test_cycle_relations.py`` and
``bench/cycle_line.py``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CURRENT",
    "SENSORS",
    "STEP_US",
    "binding_current",
    "pick_place_line",
    "pick_place_runs",
]

SENSORS = ["axis_position", "axis_velocity", "motor_current", "gripper_on", "vacuum_kpa"]
#: Column of the motor current in :data:`SENSORS`.
CURRENT = 2
#: Noise standard deviation of the motor current, in A.
CURRENT_NOISE = 0.02
#: Microseconds between rows.
STEP_US = 100_000
#: Base draw of the motor current at standstill, in A.
BASE_CURRENT = 0.3
#: A row where the axis moves faster than this (in |velocity|) is moving.
MOVING = 0.1


def _move(rows: int, start: float, stop: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position, velocity and acceleration of a smooth (cosine) move."""
    s = (np.arange(rows) + 0.5) / rows
    span = stop - start
    pos = start + span * 0.5 * (1.0 - np.cos(np.pi * s))
    vel = span * 0.5 * np.pi * np.sin(np.pi * s) / rows
    acc = span * 0.5 * np.pi**2 * np.cos(np.pi * s) / rows**2
    return pos, vel, acc


def pick_place_line(n: int, seed: int) -> np.ndarray:
    """``n`` rows of :data:`SENSORS` (1 row per 100 ms), drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    total = 0
    while total < n:
        out = int(rng.integers(10, 13))
        back = int(rng.integers(10, 13))
        grip = int(rng.integers(3, 5))
        wait = int(rng.integers(4, 12))
        p1, v1, a1 = _move(out, 0.0, 1.0)
        p2, v2, a2 = _move(back, 1.0, 0.0)
        pos = np.r_[p1, np.ones(grip), p2, np.zeros(grip + wait)]
        vel = np.r_[v1, np.zeros(grip), v2, np.zeros(grip + wait)]
        acc = np.r_[a1, np.zeros(grip), a2, np.zeros(grip + wait)]
        carrying = np.r_[np.zeros(out), np.ones(grip + back), np.zeros(grip + wait)]
        parts.append(np.c_[pos, vel * 10.0, acc * 100.0, carrying])
        total += pos.size
    cycle = np.vstack(parts)[:n]
    pos, vel, acc, on = cycle.T
    current = BASE_CURRENT + 1.0 * np.abs(vel) + (0.3 + 0.2 * on) * np.abs(acc)
    current += rng.normal(0.0, CURRENT_NOISE, n)
    vacuum = -60.0 * on + rng.normal(0.0, 0.5, n)
    pos = pos + rng.normal(0.0, 0.002, n)
    vel = vel + rng.normal(0.0, 0.005, n)
    return np.c_[pos, vel, current, on, vacuum]


def pick_place_runs(n_runs: int, rows: int, first_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n_runs`` runs of ``rows`` rows (seeds ``first_seed``, ``first_seed + 1``, ...),
    concatenated oldest first, and their frame times: a gap of hours between runs,
    so each run starts its trailing windows afresh."""
    X = np.vstack([pick_place_line(rows, first_seed + r) for r in range(n_runs)])
    t = [np.arange(rows, dtype=np.int64) * STEP_US + r * 10**10 for r in range(n_runs)]
    return X, np.concatenate(t)


def binding_current(X: np.ndarray, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``X`` whose current in ``rows`` is 20 % too high above its base
    draw while the axis moves, and which of those rows move (the faulty ones)."""
    faulty = X.copy()
    moving = np.abs(faulty[rows, 1]) > MOVING
    faulty[rows, CURRENT] += 0.2 * (faulty[rows, CURRENT] - BASE_CURRENT) * moving
    return faulty, moving
