"""What modes from a phase tag cost ``score_batch``, against the same modes from 0/1 channels.

A synthetic batch line (5 phases: fill, mix, heat, cool, discharge; a
level, a temperature, a mixer speed and three noisy process readings) is
written two ways: its phase as one integer tag, and as five one-hot 0/1
phase commands. The two have the same modes (a test checks it). A pipeline
trained on 8 batches of each scores 8 other batches in 30-frame
micro-batches with frame times, as the worker would. Passes alternate
between the two, best of ``--repeat`` each, in one process, so the ratio is
measured on the same machine load. The tag line's mode lookup is a sorted
search of the tag's values instead of a bit product, and it has four
sensors fewer.

Usage::

    OPENBLAS_NUM_THREADS=1 python bench/phase_cost.py [--repeat 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline
from lineguard.detectors.scoring import score_batch
from tests.support.batch_line import PHASES, batch_line, one_hot

BATCH = 30
SECOND_US = 1_000_000


def one_pass(pipeline, threshold: float, X: np.ndarray, t: np.ndarray) -> float:
    k, n = TRAINING_DEFAULTS.debounce
    started = time.perf_counter()
    state = None
    for lo in range(0, len(X), BATCH):
        _, state = score_batch(
            pipeline, X[lo : lo + BATCH], state, threshold, k, n, t[lo : lo + BATCH]
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    train, test = batch_line(rng, 8, noise_columns=3), batch_line(rng, 8, noise_columns=3)
    t_train = np.arange(len(train), dtype=np.int64) * SECOND_US
    t_test = np.arange(len(test), dtype=np.int64) * SECOND_US
    tag_names = ["phase", "level", "temperature", "mixer", "p1", "p2", "p3"]
    cmd_names = [f"phase{p}_on" for p in PHASES] + tag_names[1:]
    lines = {
        "phase tag": (train, test, tag_names),
        "0/1 commands": (one_hot(train), one_hot(test), cmd_names),
    }
    trained = {}
    for name, (Xtr, Xte, names) in lines.items():
        pipeline, threshold, info = train_pipeline(Xtr, names, "pca", time_us=t_train)
        trained[name] = (pipeline, threshold, Xte, info["modes"]["n_modes"])
    best = dict.fromkeys(trained, np.inf)
    for _ in range(args.repeat):
        for name, (pipeline, threshold, Xte, _) in trained.items():
            best[name] = min(best[name], one_pass(pipeline, threshold, Xte, t_test))
    frames = len(test)
    fps = {name: frames / s for name, s in best.items()}
    for name, (_, _, _, n_modes) in trained.items():
        print(f"{name:13s} modes {n_modes}  {fps[name]:10.0f} frames/s (best of {args.repeat})")
    ratio = fps["phase tag"] / fps["0/1 commands"]
    print(f"phase tag / 0/1 commands: {ratio:.3f}")
    if args.json:
        print(
            json.dumps(
                {
                    "frames": frames,
                    "batch": BATCH,
                    "repeat": args.repeat,
                    "fps_phase_tag": round(fps["phase tag"]),
                    "fps_commands": round(fps["0/1 commands"]),
                    "ratio": round(ratio, 3),
                }
            )
        )


if __name__ == "__main__":
    main()
