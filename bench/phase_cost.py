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
import time

import numpy as np

from lineguard.detectors.calibration import TRAINING_DEFAULTS, train_pipeline
from lineguard.detectors.scoring import score_batch

PHASES = (1, 2, 3, 4, 5)
LENGTHS = (120, 100, 120, 120, 100)
BATCH = 30
SECOND_US = 1_000_000


def batch_line(rng: np.random.Generator, n_batches: int) -> np.ndarray:
    """Rows: phase tag, level, temperature, mixer speed, three noisy readings."""
    rows = []
    for _ in range(n_batches):
        level, temp = 0.0, 20.0
        rate = 0.008 * rng.uniform(0.95, 1.05)
        for phase, n in zip(PHASES, LENGTHS, strict=True):
            for _ in range(n):
                if phase == 1:
                    level += rate + rng.normal(scale=0.0005)
                elif phase == 5:
                    level = max(level - 0.0095 + rng.normal(scale=0.0005), 0.0)
                temp += {3: 0.33, 4: -0.33}.get(phase, 0.0)
                mixer = 100.0 + rng.normal(scale=1.0) if phase == 2 else 0.0
                noise = rng.normal(size=3)
                rows.append([phase, level, temp + rng.normal(scale=0.05), mixer, *noise])
    return np.array(rows)


def one_hot(X: np.ndarray) -> np.ndarray:
    """The same rows with the phase as five 0/1 commands instead of the tag."""
    commands = (X[:, [0]] == np.array(PHASES)[None, :]).astype(float)
    return np.column_stack([commands, X[:, 1:]])


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
    train, test = batch_line(rng, 8), batch_line(rng, 8)
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
