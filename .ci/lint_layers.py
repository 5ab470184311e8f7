"""Check the import layers (pyproject's [tool.importlinter]) with lint-imports.

The repository keeps each stage in a top-level folder (``detectors/`` ...)
installed as ``lineguard.detectors`` through setuptools' package-dir mapping.
An editable install maps them with an import hook that grimp cannot walk, so
this builds the installed layout from symlinks in a temporary directory and
runs ``lint-imports`` on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping = config["tool"]["setuptools"]["package-dir"]
    with tempfile.TemporaryDirectory(prefix="lineguard-layers-") as tmp:
        top = Path(tmp) / "lineguard"
        top.mkdir()
        for entry in (ROOT / mapping["lineguard"]).iterdir():
            (top / entry.name).symlink_to(entry)
        for package, folder in mapping.items():
            parts = package.split(".")
            if len(parts) != 2:
                continue
            target = top / parts[1]
            if target.is_symlink():
                target.unlink()
            target.symlink_to(ROOT / folder, target_is_directory=True)
        env = {**os.environ, "PYTHONPATH": tmp}
        lint = Path(sys.executable).with_name("lint-imports")
        return subprocess.call([str(lint), str(ROOT / "pyproject.toml")], env=env, cwd=tmp)


if __name__ == "__main__":
    sys.exit(main())
