"""A synthetic batch line whose phase is announced by one integer tag.

Five phases (fill, mix, heat, cool, discharge), each with its own normal
behaviour: the level rises in fill, falls in discharge and holds otherwise;
the temperature rises in heat and falls in cool; the mixer runs only in mix.
Used by the phase-channel tests and by ``bench/phase_cost.py``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BATCH", "LENGTHS", "PHASES", "batch_line", "one_hot"]

PHASES = (1, 2, 3, 4, 5)  # fill, mix, heat, cool, discharge
LENGTHS = (120, 100, 120, 120, 100)
BATCH = sum(LENGTHS)


def one_batch(rng: np.random.Generator, noise_columns: int = 0) -> np.ndarray:
    """One batch: columns phase tag, level, temperature, mixer speed, then
    ``noise_columns`` independent standard-normal readings."""
    rate = 0.008 * rng.uniform(0.95, 1.05)  # fill rate differs a little per batch
    rows, level, temp = [], 0.0, 20.0
    for phase, n in zip(PHASES, LENGTHS, strict=True):
        for _ in range(n):
            if phase == 1:
                level += rate + rng.normal(scale=0.0005)
            elif phase == 5:
                level = max(level - 0.0095 + rng.normal(scale=0.0005), 0.0)
            temp += {3: 0.33, 4: -0.33}.get(phase, 0.0)
            mixer = 100.0 + rng.normal(scale=1.0) if phase == 2 else 0.0
            noise = rng.normal(size=noise_columns).tolist() if noise_columns else []
            rows.append([phase, level, temp + rng.normal(scale=0.05), mixer, *noise])
    return np.array(rows)


def batch_line(rng: np.random.Generator, n_batches: int, noise_columns: int = 0) -> np.ndarray:
    """``n_batches`` complete batches, one after the other."""
    return np.concatenate([one_batch(rng, noise_columns) for _ in range(n_batches)])


def one_hot(X: np.ndarray) -> np.ndarray:
    """The same rows with the phase (column 0) as five 0/1 commands instead of the tag."""
    commands = (X[:, [0]] == np.array(PHASES)[None, :]).astype(float)
    return np.column_stack([commands, X[:, 1:]])
