"""LineGuard on SKAB's protocol, beside the published SKAB leaderboard.

Runs ``lineguard evaluate ../shared/data/skab/valve1 ../shared/data/skab/valve2
--train-rows 400 --json`` (the real command, in a subprocess, so what is
measured is what a user runs; the labelled folders only, as SKAB's protocol
scores them -- the unlabelled ``anomaly-free/`` run would count as one more
normal run, see ``bench/skab_normal.py``) for
the library's default detector and for ``auto``, and prints LineGuard's rows
beside the leaderboard rows read from the data folder's README.md.

Caveat printed with the table: the published rows are over all 34 labelled
SKAB files; the shared folder holds 20 of them (valve1, valve2), so the rows
are comparable in protocol, not in files.

Usage::

    python bench/skab.py [--data DIR] [--detector NAME ...] [--report OUT.html]
                         [--also-debounce K/N] [--json]

With ``--json`` the last line is one JSON object: ``lineguard`` (one entry per
detector with the evaluate metrics and the wall time) and ``leaderboard``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "skab"
TRAIN_ROWS = 400


def leaderboard(readme: Path) -> list[dict[str, object]]:
    """Rows ``| algorithm | F1 | FAR % | MAR % |`` of the README's leaderboard table."""
    rows = []
    row = re.compile(r"^\|\s*([^|]+?)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|\s*$")
    for text in readme.read_text(encoding="utf-8").splitlines():
        m = row.match(text.strip())
        if m:
            name, f1, far, mar = m.groups()
            rows.append({"algorithm": name, "f1": float(f1), "far": float(far), "mar": float(mar)})
    return rows


def labelled_folders(data: Path) -> list[str]:
    """SKAB's labelled folders under ``data`` (``valve1``, ``valve2``, ...), or ``data`` itself."""
    found = sorted(str(p) for p in data.iterdir() if p.is_dir() and p.name != "anomaly-free")
    return found or [str(data)]


def run_evaluate(
    data: Path, detector: str | None, report: Path | None, debounce: str | None = None
) -> dict[str, object]:
    """One ``lineguard evaluate`` run; returns its JSON line plus the wall time."""
    with tempfile.TemporaryDirectory(prefix="lineguard-skab-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "lineguard.cli",
            "evaluate",
            *labelled_folders(data),
            "--train-rows",
            str(TRAIN_ROWS),
            "--predictions",
            str(Path(tmp) / "predictions"),
            "--json",
        ]
        if detector:
            cmd += ["--detector", detector]
        if report:
            cmd += ["--report", str(report)]
        if debounce:
            cmd += ["--debounce", debounce]
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"lineguard evaluate failed ({done.returncode}):\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(wall, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SKAB data folder")
    parser.add_argument(
        "--detector",
        nargs="*",
        default=[None, "auto"],
        help="detectors to run (default: the library default, then auto)",
    )
    parser.add_argument("--report", type=Path, default=None, help="HTML report of the first")
    parser.add_argument(
        "--also-debounce",
        metavar="K/N",
        default=None,
        help="one more row: the default detector with this debounce (a sensitivity check)",
    )
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    data = args.data.resolve()
    if not data.is_dir():
        print(
            f"SKAB data not found at {data}: expected the SKAB folder (valve1/, valve2/, "
            f"README.md) there, e.g. from https://github.com/waico/SKAB (data/); "
            f"pass --data DIR",
            file=sys.stderr,
        )
        return 2
    readme = data / "README.md"
    published = leaderboard(readme) if readme.is_file() else []

    ours = []
    for i, detector in enumerate(args.detector):
        ours.append(run_evaluate(data, detector, args.report if i == 0 else None))
    if args.also_debounce:
        ours.append(run_evaluate(data, None, None, args.also_debounce))

    print(f"SKAB protocol ({TRAIN_ROWS} training rows per run), data: {data}")
    header = ("algorithm", "F1", "FAR %", "MAR %", "NAB std", "faults caught", "false alarms")
    rows = []
    for r in ours:
        rows.append(
            (
                f"LineGuard {r['detector']}, debounce {r['debounce']} (this run)",
                f"{r['f1']:.2f}",
                f"{r['far']:.2f}",
                f"{r['mar']:.2f}",
                f"{r['nab_standard']}",
                f"{r['events_detected']}/{r['events']}",
                str(r["false_alarm_events"]),
            )
        )
    for p in published:
        rows.append((str(p["algorithm"]), f"{p['f1']:.2f}", f"{p['far']:.2f}", f"{p['mar']:.2f}"))
    widths = [
        max(len(h), *(len(row[i]) for row in rows if i < len(row))) for i, h in enumerate(header)
    ]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        cells = list(row) + ["-"] * (len(header) - len(row))
        print(" | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))
    for r in ours:
        print(
            f"# {r['detector']}: {r['runs']} runs, {r['test_rows']} test rows, "
            f"event recall {r['event_recall']}, median delay {r['median_delay_s']} s, "
            f"evaluate took {r['wall_s']} s wall ({r['seconds']} s scoring)"
        )
    if published:
        print(
            "# published rows: all 34 labelled SKAB files (SKAB README); LineGuard rows: "
            "the files in the data folder above"
        )
    if args.json:
        print(json.dumps({"lineguard": ours, "leaderboard": published}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
