"""Are two trees' scoring results byte for byte the same? ``score_batch`` on varied cases.

A speed change to the scoring path must not change a result. This scores
the same cases under another tree's interpreter (``--against TREE``, a
checkout with its own ``.venv``, or a wrapper there that sets
``PYTHONPATH``) and under this one, and compares every output byte for
byte: ``score``, ``raw_exceed``, ``anomaly``, ``top_sensors``, ``reason``
and the final ``ScoringState`` (as JSON), for

* the benchmark's 50-sensor line (:func:`synthetic.synthetic_line`) with
  each detector (pca, mcd, ecod, iforest, auto), frame times with a gap and
  a backward step;
* the same line with NaNs, a sensor missing for 30 frames, a frozen and a
  stepped sensor;
* a line with two 0/1 state channels (three modes, an unseen one in the
  scored part), plain and with a trimmed fit;
* window 1, and a model without checks or slow-sensor detrending;

each in batches of 1 (first 300 frames), 7 (with the state round-tripped
through JSON), 64, 500, 1300 and 4000 frames. Needs a tree whose
``train_pipeline`` takes ``time_us`` and ``max_trim`` (9dab47b or later)::

    OPENBLAS_NUM_THREADS=1 python bench/scoring_identity.py --against /path/to/tree
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("score", "raw_exceed", "anomaly", "top_sensors", "reason")


def cases():
    """The scored cases (module docs)."""
    from lineguard.detectors.calibration import train_pipeline

    sys.path.insert(0, str(REPO / "bench"))
    from synthetic import synthetic_line

    sensors = [f"s{j:02d}" for j in range(50)]
    X = synthetic_line(1000, 6000, 50)
    clean = synthetic_line(1000, 6000, 50, faults=False)[:2000]
    S = X[2000:].copy()
    t = np.arange(4000, dtype=np.int64) * 1_000_000
    t[1500:] += 10**9  # a gap
    t[2500:] -= 5 * 10**6  # backwards
    from lineguard.detectors.catalogue import DETECTORS

    # The PCA + MCD ensemble was named "auto" before auto became a selection.
    ensemble = "ensemble" if "ensemble" in DETECTORS else "auto"
    for det in ("pca", "mcd", "ecod", "iforest", ensemble):
        tt = np.arange(2000, dtype=np.int64) * 1_000_000
        pipe, thr, _ = train_pipeline(clean, sensors, det, time_us=tt)
        yield ("ensemble" if det == ensemble else det), pipe, thr, S, t
    # NaNs, frozen sensor, step
    S2 = S.copy()
    rng = np.random.default_rng(3)
    S2[rng.random(S2.shape) < 0.01] = np.nan
    S2[100:130, 7] = np.nan
    S2[800:900, 3] = S2[800, 3]  # frozen
    S2[1200:1210, 5] += 1000.0  # step
    pipe, thr, _ = train_pipeline(clean, sensors, "pca")
    yield "nan-freeze", pipe, thr, S2, None
    # state channels / modes
    Xm = synthetic_line(7, 6000, 8)
    mode = (np.arange(6000) // 37) % 3
    valve = (mode == 1).astype(float)
    heater = (mode == 2).astype(float)
    Xm[:, 0] += 10 * valve
    Xm[:, 1] += 5 * heater
    Xm[:, 2] = np.round(Xm[:, 2] / 3)  # repeats
    Xm = np.column_stack([Xm, valve, heater])
    Sm = Xm[2000:].copy()
    Sm[300:340, 8] = 1
    Sm[300:340, 9] = 1  # unseen mode
    Sm[1000:1100, 4] = Sm[1000, 4]
    sens = [f"m{j}" for j in range(10)]
    for trim in (0.0, 0.05):
        pipe, thr, _ = train_pipeline(Xm[:2000], sens, "pca", max_trim=trim)
        yield f"modes-{trim}", pipe, thr, Sm, None
    pipe, thr, _ = train_pipeline(clean[:, :3], sensors[:3], "pca", window=1)
    yield "w1", pipe, thr, S[:, :3], None
    pipe, thr, _ = train_pipeline(clean, sensors, "pca", sensor_checks=False, detrend_slow=None)
    yield "nochecks", pipe, thr, S, None


def dump(path: Path) -> None:
    """Score every case in every batching; pickle the outputs to ``path``."""
    from lineguard.detectors.scoring import ScoringState, score_batch

    out = {}
    for name, pipe, thr, S, t in cases():
        for bs in (1, 7, 64, 500, 1300, 4000):
            rows = S.shape[0] if bs > 1 else 300
            state, parts = None, []
            for lo in range(0, rows, bs):
                hi = min(lo + bs, rows)
                kw = {} if t is None else {"time_us": t[lo:hi]}
                r, state = score_batch(pipe, S[lo:hi], state, thr, 2, 5, **kw)
                parts.append(r)
                if bs == 7 and lo % 14 == 0:
                    state = ScoringState.from_dict(state.to_dict())
            res = {f: np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS}
            res["state"] = repr(state.to_dict())
            out[(name, bs)] = res
    with path.open("wb") as fh:
        pickle.dump(out, fh)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="another tree (with .venv/bin/python)")
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dump:
        dump(Path(args.dump))
        return 0
    if not args.against:
        parser.error("--against TREE is required")
    other = Path(args.against).resolve() / ".venv" / "bin" / "python"
    env = dict(os.environ, OPENBLAS_NUM_THREADS=os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    with tempfile.TemporaryDirectory() as tmp:
        dumps = []
        for label, python in (("other", str(other)), ("this", sys.executable)):
            path = Path(tmp) / f"{label}.pkl"
            subprocess.run(
                [python, "-W", "ignore", str(Path(__file__).resolve()), "--dump", str(path)],
                env=env,
                cwd="/",
                check=True,
            )
            with path.open("rb") as fh:
                dumps.append(pickle.load(fh))
    a, b = dumps
    if a.keys() != b.keys():
        print(f"different cases: {sorted(set(a) ^ set(b))}")
        return 1
    differing = []
    for key in a:
        for f in (*FIELDS, "state"):
            x, y = a[key][f], b[key][f]
            same = x == y if f == "state" else (x.dtype == y.dtype and x.tobytes() == y.tobytes())
            if not same:
                differing.append((key, f))
    for key, f in differing:
        print(f"differs: {key} {f}")
    print(f"{len(a)} cases x {len(FIELDS) + 1} outputs compared; {len(differing)} differ")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
