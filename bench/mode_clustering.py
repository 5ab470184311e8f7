"""Do clusters of a batch line's readings find its phases? (issue 16, item 2)

The third source of operating modes the issue names is clustering of the
training rows, for a line that sends neither 0/1 state channels nor a phase
tag. This measures whether that recovers the phases on the synthetic batch
line of ``tests/support/batch_line.py`` (fill, mix, heat, cool, discharge;
level, temperature and mixer speed) with its phase tag removed: k-means on
the standardized readings, alone and with each reading's 20-row slope, for k
= 2..6. For each k: the adjusted Rand index against the true phases (1: the
phases exactly, 0: chance) and the silhouette (what an unsupervised rule would
pick k by, since a plant's rows carry no phase labels).

A batch's phases overlap in value space: fill and discharge pass through the
same levels at the same temperature, heat and cool through the same
temperatures at the same level. So clusters of readings are not phases, and
the silhouette, which likes compact groups of values, does not point at the
k whose clusters are. Slopes separate them better, but then the mode is read
off the very readings a sensor fault changes: the last figure freezes the
level through the fill of one more batch and reports the share of those rows
the clusters (readings + slope, k by silhouette) put in a cluster whose
training rows are mostly fill, the only phase in which a still level is a
fault. A frozen level has the slope of mix or heat, so it is judged as mix
or heat, where a still level is normal.

Usage::

    OPENBLAS_NUM_THREADS=1 python bench/mode_clustering.py [--batches 8] [--seed 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, silhouette_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.batch_line import BATCH, LENGTHS, batch_line

SLOPE_ROWS = 20


def feature_sets(readings: np.ndarray) -> dict[str, np.ndarray]:
    """Standardized readings, and the same with each reading's trailing slope."""
    Z = (readings - readings.mean(axis=0)) / readings.std(axis=0)
    slope = np.zeros_like(Z)
    slope[SLOPE_ROWS:] = (Z[SLOPE_ROWS:] - Z[:-SLOPE_ROWS]) / SLOPE_ROWS
    slope /= np.where(slope.std(axis=0) > 0, slope.std(axis=0), 1.0)
    return {"readings": Z, "readings + slope": np.hstack([Z, slope])}


def fill_rows_in_fill(X: np.ndarray, k: int, seed: int, frozen: bool) -> float:
    """Share of one more batch's fill rows that the clusters put in a fill cluster.

    With ``frozen`` the level sticks a quarter into the fill; without, the
    same batch as it is (the control). Counted from the first row whose
    slope window lies wholly in the fill's stuck part.
    """
    test = batch_line(np.random.default_rng(seed + 1), 1)
    fill = slice(LENGTHS[0] // 4, LENGTHS[0])
    if frozen:
        test[fill, 1] = test[fill.start, 1]
    F = feature_sets(np.vstack([X, test])[:, 1:])["readings + slope"]
    model = KMeans(k, n_init=10, random_state=0).fit(F[: X.shape[0]])
    fill_clusters = [c for c in range(k) if np.mean(X[model.labels_ == c, 0] == 1) > 0.5]
    rows = model.predict(F[X.shape[0] :][fill][SLOPE_ROWS:])
    return float(np.isin(rows, fill_clusters).mean())


def measure(batches: int, seed: int) -> list[dict[str, object]]:
    X = batch_line(np.random.default_rng(seed), batches)
    assert X.shape[0] == batches * BATCH
    phase = X[:, 0].astype(int)
    out = []
    for name, F in feature_sets(X[:, 1:]).items():
        for k in range(2, 7):
            labels = KMeans(k, n_init=10, random_state=0).fit_predict(F)
            out.append(
                {
                    "features": name,
                    "k": k,
                    "ari": round(float(adjusted_rand_score(phase, labels)), 3),
                    # every 5th row: the silhouette is quadratic in the rows
                    "silhouette": round(float(silhouette_score(F[::5], labels[::5])), 3),
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    rows = measure(args.batches, args.seed)
    print("features | k | adjusted Rand index vs phases | silhouette")
    for r in rows:
        print(f"{r['features']} | {r['k']} | {r['ari']} | {r['silhouette']}")
    picked = {}
    for name in {r["features"] for r in rows}:
        best = max((r for r in rows if r["features"] == name), key=lambda r: r["silhouette"])
        picked[name] = {"k": best["k"], "ari": best["ari"]}
        print(f"silhouette picks k={best['k']} on {name}: ARI {best['ari']}")
    X = batch_line(np.random.default_rng(args.seed), args.batches)
    k = picked["readings + slope"]["k"]
    control = fill_rows_in_fill(X, k, args.seed, frozen=False)
    share = fill_rows_in_fill(X, k, args.seed, frozen=True)
    print(
        f"fill rows in a fill cluster (readings + slope, k={k}): "
        f"{100 * control:.1f} % as recorded, {100 * share:.1f} % with the level frozen"
    )
    if args.json:
        print(
            json.dumps(
                {
                    "rows": rows,
                    "picked_by_silhouette": picked,
                    "fill_rows_in_fill_cluster": round(control, 3),
                    "frozen_fill_rows_in_fill_cluster": round(share, 3),
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
