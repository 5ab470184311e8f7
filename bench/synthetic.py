"""The benchmarks' synthetic production line, importable without LineGuard.

``bench/pipeline.py`` and the scoring-stage benchmarks build their fleet from
it; it needs only NumPy and SciPy, so ``bench/scoring_cost.py`` can run under
an older checkout's interpreter and score the very same rows there.
"""

from __future__ import annotations

import numpy as np

__all__ = ["synthetic_line"]


def synthetic_line(seed: int, rows: int, sensors: int, faults: bool = True) -> np.ndarray:
    """A line's sensor rows: correlated, slowly varying, with two injected faults.

    Plant sensors on one line are driven by a few shared process states
    (throughput, temperature, pressure...), so readings are built from four
    AR(1) latent factors mixed into every sensor, plus sensor noise and each
    sensor's own offset and unit scale. Two fault windows (3 % of the rows)
    shift three sensors, so alerts and incidents run too.
    """
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    latent = lfilter([1.0], [1.0, -0.98], rng.normal(size=(rows, 4)), axis=0) * 0.2
    mix = rng.normal(size=(4, sensors)) / 2.0
    noise = rng.normal(size=(rows, sensors)) * 0.3
    offset = rng.uniform(0.0, 100.0, sensors)
    scale = rng.uniform(0.5, 5.0, sensors)
    X = latent @ mix + noise
    if faults and rows > 1000:
        width = max(rows // 66, 10)
        for start in (rows // 3, (2 * rows) // 3):
            cols = rng.choice(sensors, size=min(3, sensors), replace=False)
            X[start : start + width, cols] += 4.0
    return offset + scale * X
