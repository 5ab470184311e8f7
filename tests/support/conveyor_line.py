"""A synthetic conveyor whose normal operation holds rare events.

The conveyor runs and stops in blocks of ``block`` rows (a long-dwell 0/1
state); the belt speed follows the state with a little noise, the motor
current follows the speed; a reject gate (0/1) opens for one row at random
on ``gate_share`` of the rows. The starts and stops (a few per cent of rows
have one in their feature window) and the gate's openings are normal and
rare: a robust fit takes them for anomalies unless it knows better.

Used by ``tests/detectors/test_rare_normal_events.py`` and
``bench/rare_events.py``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SENSORS", "conveyor_line"]

SENSORS = ["conveyor_on", "motor_current", "belt_speed", "reject_gate"]


def conveyor_line(n: int, seed: int, block: int = 400, gate_share: float = 0.025) -> np.ndarray:
    """``n`` rows of :data:`SENSORS`, drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    on = ((np.arange(n) // block) % 2).astype(float)
    speed = on + rng.normal(0.0, 0.02, n)
    current = 0.5 + 2.0 * speed + rng.normal(0.0, 0.05, n)
    gate = np.zeros(n)
    gate[rng.choice(n, int(n * gate_share), replace=False)] = 1.0
    return np.c_[on, current, speed, gate]
