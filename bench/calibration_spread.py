"""Does the 1 % target hold on a stationary line? The realized exceedance rate over many lines.

The alert threshold is the conformal quantile of held-back scores
(:func:`lineguard.detectors.calibration.fit_threshold`). Its guarantee needs
exchangeable scores, and trailing-window features make neighbouring scores
nearly copies of each other: 120 held-back rows (a 400-row history) are
worth far fewer independent ones, so the threshold, the largest of them, is
both a little low on average and very different from one line to the next.
The 2-of-5 debounce turns a raw exceedance rate into an alert rate convexly
(isolated exceedances never alert, clustered ones do), so that spread alone
raises the average alert rate.

This script measures it where nothing else can interfere: ``--lines``
synthetic stationary lines (two AR(1) latent factors, phi ``--phi``, seen by
``--sensors`` sensors with independent noise; every row normal), each
trained on its first ``--train`` rows with the defaults (``train_pipeline``
with frame times) and scored on the next 3,000 rows by ``score_batch``. It
prints the distribution over lines of the raw exceedance rate of the score
and of the debounced alert rate. ``--cross-fit K`` replaces the threshold by
the conformal quantile of out-of-fold scores of all training rows (K
consecutive folds, each scored by a model fitted on the others; the model
that scores the test rows is unchanged): measured here, not in the library.

Usage::

    python bench/calibration_spread.py [--train 400] [--lines 30] [--cross-fit K] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys

import numpy as np
from sklearn.base import clone

from lineguard.detectors.calibration import TRAINING_DEFAULTS, fit_threshold, train_pipeline
from lineguard.detectors.scoring import score_batch

TEST_ROWS = 3000


def stationary_line(rng: np.random.Generator, rows: int, sensors: int, phi: float) -> np.ndarray:
    """Rows of a stationary line: two AR(1) factors plus independent sensor noise."""
    latent = rng.normal(size=(rows, 2))
    for i in range(1, rows):
        latent[i] = phi * latent[i - 1] + np.sqrt(1.0 - phi**2) * latent[i]
    loadings = rng.normal(size=(2, sensors))
    return latent @ loadings + 0.5 * rng.normal(size=(rows, sensors))


def cross_fit_threshold(pipe, X: np.ndarray, t: np.ndarray, folds: int) -> float:
    """Conformal quantile of out-of-fold scores of every training row."""
    n, w = X.shape[0], pipe.window
    bounds = np.linspace(0, n, folds + 1).astype(int)
    scores = []
    for a, b in itertools.pairwise(bounds.tolist()):
        rest = np.r_[0:a, b:n]
        times = t[rest].copy()
        times[a:] += 10**12  # a gap at the seam: no trailing window spans it
        model = clone(pipe).fit(X[rest], time_us=times)
        context = X[max(a - (w - 1), 0) : a] if a > 0 else None
        features, _, imputed = model.transform_rows(X[a:b], context)
        s, _ = model.score_features(features, imputed, context)
        scores.append(s if a > 0 else s[w - 1 :])
    return fit_threshold(np.concatenate(scores), TRAINING_DEFAULTS.target_far)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--lines", type=int, default=30)
    parser.add_argument("--sensors", type=int, default=6)
    parser.add_argument("--phi", type=float, default=0.5)
    parser.add_argument("--cross-fit", type=int, default=None, metavar="K")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    k, n = TRAINING_DEFAULTS.debounce
    raw, alerted = [], []
    for seed in range(args.lines):
        rng = np.random.default_rng(seed)
        X = stationary_line(rng, args.train + TEST_ROWS, args.sensors, args.phi)
        t = np.arange(X.shape[0], dtype=np.int64) * 1_000_000
        names = [f"s{j}" for j in range(args.sensors)]
        pipe, threshold, _ = train_pipeline(X[: args.train], names, time_us=t[: args.train])
        if args.cross_fit:
            threshold = cross_fit_threshold(pipe, X[: args.train], t[: args.train], args.cross_fit)
        r, _ = score_batch(pipe, X, None, threshold, k, n, time_us=t)
        raw.append(100.0 * float(np.mean(r.score[args.train :] > threshold)))
        alerted.append(100.0 * float(np.mean(r.anomaly[args.train :])))
    row = {"train_rows": args.train, "lines": args.lines, "cross_fit": args.cross_fit}
    for name, values in (("raw_exceed_pct", raw), ("alerted_pct", alerted)):
        v = np.asarray(values)
        row[name] = {
            "mean": round(float(v.mean()), 2),
            "median": round(float(np.median(v)), 2),
            "p90": round(float(np.percentile(v, 90)), 2),
            "max": round(float(v.max()), 2),
        }
        print(
            f"{name} over {args.lines} lines ({args.train} training rows, target "
            f"{100 * TRAINING_DEFAULTS.target_far:g} % raw): mean {row[name]['mean']}, "
            f"median {row[name]['median']}, p90 {row[name]['p90']}, max {row[name]['max']}"
        )
    if args.json:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
