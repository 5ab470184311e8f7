"""Reductions whose result for a row never depends on the other rows.

A streaming scorer must give bitwise identical results whatever the batch
size: offline evaluation scores a whole file at once and must reproduce what
the live worker raised frame by frame. BLAS matrix products and NumPy's axis
reductions may pick different kernels (and so different rounding) depending
on how many rows are in the array, so the hot path only uses forms whose
per-row arithmetic is fixed:

* :func:`ordered_sum` sums short rows strictly left to right and long rows
  with one stacked ``(1, K) @ (K, 1)`` product per row.
* :func:`ordered_matmul` is BLAS ``gemm`` on blocks of a fixed number of
  rows when the BLAS NumPy runs on gives a row the same result at any
  position in such a block -- measured once per process by
  :func:`blas_rows_are_independent` (true of OpenBLAS) -- and one stacked
  product per row otherwise, about 10x slower. Fixed blocks matter: a BLAS
  chooses its kernel, and so its summation order, by the product's size.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["blas_rows_are_independent", "ordered_matmul", "ordered_sum"]


# Above this many summed columns, ordered_sum uses one BLAS dot per row.
_LOOP_MAX_COLUMNS = 16
# Rows per BLAS product in ordered_matmul (see _gemm).
_GEMM_ROWS = 64


def ordered_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis in an order that does not depend on the other axes.

    Short rows (a trailing window) are summed strictly left to right, one
    vectorized step per column. Long rows (a PCA's features) are summed as
    one ``(1, K) @ (K, 1)`` product per row: one call instead of K, and still
    the same order for a row whatever else is in the batch. Which of the two
    is used depends only on K.
    """
    k = a.shape[-1]
    if k > _LOOP_MAX_COLUMNS and a.size:
        flat = np.ascontiguousarray(a, dtype=np.float64).reshape(-1, 1, k)
        return np.matmul(flat, np.ones((k, 1)))[:, 0, 0].reshape(a.shape[:-1])
    out = np.zeros(a.shape[:-1])
    for j in range(k):
        out += a[..., j]
    return out


def ordered_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for 2-D arrays, each row's result independent of the other rows.

    One BLAS product for the batch where :func:`blas_rows_are_independent`
    holds, else one stacked ``(1, K) @ (K, k)``
    product per row, which runs every row through the same call whatever
    the batch size.
    """
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    if a.shape[0] == 0:
        return np.zeros((0, b.shape[1]))
    if not blas_rows_are_independent():
        return np.matmul(a[:, None, :], b)[:, 0, :]
    return _gemm(a, b)


def _gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` through BLAS ``gemm`` on blocks of exactly ``_GEMM_ROWS`` rows.

    A BLAS picks its kernel by the sizes of the product, and kernels sum in
    different orders: OpenBLAS has a separate one for small matrices, so the
    same row of a (150, 43) product came out differently in a batch of 1,
    8, 16 or 100 rows than in one of 400. Every product is therefore made on
    blocks of the same size (the last one zero-padded), and a lone column,
    which NumPy would send to ``gemv``, is padded to two. Small blocks cost
    nothing on large batches and keep a one-row call cheap.
    """
    m, k = a.shape[0], b.shape[1]
    if k == 1:
        b = np.concatenate([b, np.zeros_like(b)], axis=1)
    out = np.empty((m, b.shape[1]))
    whole = m - m % _GEMM_ROWS
    for start in range(0, whole, _GEMM_ROWS):
        np.matmul(a[start : start + _GEMM_ROWS], b, out=out[start : start + _GEMM_ROWS])
    if whole < m:
        block = np.zeros((_GEMM_ROWS, a.shape[1]))
        block[: m - whole] = a[whole:]
        out[whole:] = (block @ b)[: m - whole]
    return out[:, :k] if k == 1 else out


@lru_cache(maxsize=1)
def blas_rows_are_independent() -> bool:
    """Whether this BLAS computes a row of ``a @ b`` the same at any batch size.

    Probes the shapes a worker meets (batches of 1 to 1024 rows, the row at
    the start, middle and end, 1 to 256 columns) against the row computed
    alone, all through the fixed-size blocks of :func:`_gemm`. Cached: one
    probe per process (a few milliseconds).
    """
    rng = np.random.default_rng(20260101)
    for K, k in ((24, 5), (30, 1), (150, 1), (150, 43), (150, 53), (256, 256)):
        b = rng.normal(size=(K, k))
        x = rng.normal(size=(1, K))
        reference = _gemm(x, b)[0]
        for m in (2, 3, 7, 16, 17, 64, 255, 512, 1024):
            for position in {0, m // 2, m - 1}:
                a = rng.normal(size=(m, K))
                a[position] = x
                if not np.array_equal(_gemm(a, b)[position], reference):
                    return False
    return True
