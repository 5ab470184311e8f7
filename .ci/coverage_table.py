"""Line coverage per installed package, after `coverage combine`.

The five packages live in their own top-level folders (pyproject's
``package-dir``), so coverage's per-file report is grouped here by package.
Exits 1 when a package, or the total, is below its floor in
``[tool.lineguard.coverage-floor]``.

Usage: python .ci/coverage_table.py [--data-file .coverage] [--no-floor]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def package_of(path: Path, package_dirs: dict[str, Path]) -> str | None:
    """The deepest package whose folder holds ``path``."""
    best = None
    for package, folder in package_dirs.items():
        if path.is_relative_to(folder) and (best is None or len(package) > len(best)):
            best = package
    return best


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-file", default=str(ROOT / ".coverage"))
    parser.add_argument("--no-floor", action="store_true")
    args = parser.parse_args()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    dirs = config["tool"]["setuptools"]["package-dir"]
    packages = config["tool"]["coverage"]["run"]["source_pkgs"]
    package_dirs = {p: (ROOT / dirs[p]).resolve() for p in packages}
    floors = config["tool"]["lineguard"]["coverage-floor"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "coverage.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "coverage",
                "json",
                "-q",
                "--data-file",
                args.data_file,
                "-o",
                str(out),
            ],
            check=True,
            cwd=ROOT,
        )
        files = json.loads(out.read_text())["files"]
    sums = {p: [0, 0] for p in packages}
    for name, data in files.items():
        package = package_of((ROOT / name).resolve(), package_dirs)
        if package is None:
            continue
        sums[package][0] += data["summary"]["num_statements"]
        sums[package][1] += data["summary"]["missing_lines"]
    total = [sum(s[0] for s in sums.values()), sum(s[1] for s in sums.values())]
    failed = []
    print(f"{'package':<22} {'stmts':>6} {'miss':>6} {'cover':>7} {'floor':>6}")
    for package, (stmts, miss) in [*sums.items(), ("TOTAL", total)]:
        cover = 100.0 * (stmts - miss) / stmts if stmts else 100.0
        floor = float(floors.get(package, 0.0))
        mark = ""
        if cover < floor:
            failed.append(package)
            mark = "  BELOW FLOOR"
        print(f"{package:<22} {stmts:>6} {miss:>6} {cover:>6.1f}% {floor:>5.1f}%{mark}")
    if failed and not args.no_floor:
        print(f"coverage below its floor: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
