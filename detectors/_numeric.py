"""Reductions with a fixed, per-row summation order.

BLAS matrix products and NumPy's axis reductions may pick different kernels
(and so different rounding) depending on how many rows are in the array. A
streaming scorer must give bitwise identical results whatever the batch size,
so the hot path sums in an explicit order: one vectorized elementwise step
per summed column. The summed dimension is small (sensors x features), so
this costs little.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ordered_matmul", "ordered_sum"]


def ordered_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis, strictly left to right."""
    out = np.zeros(a.shape[:-1])
    for j in range(a.shape[-1]):
        out += a[..., j]
    return out


def ordered_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D arrays with a row-independent summation order."""
    out = np.zeros((a.shape[0], b.shape[1]))
    for j in range(a.shape[1]):
        out += a[:, j, None] * b[j]
    return out
