"""The model registry: versioned, verified bundles of each line's detector.

Layout under the registry root (a directory; at scale, a shared volume or an
object-store prefix synced to each worker, since a bundle is immutable once
written)::

    <root>/<line_id>/<version>/manifest.json   envelope: what, from which data, hashes
    <root>/<line_id>/<version>/model.skops     the fitted pipeline, skops format
    <root>/<line_id>/ACTIVE                    the version workers serve
    <root>/<line_id>/SHADOW                    the candidate scored in shadow, if any
    <root>/<line_id>/HISTORY.jsonl             activations, promotions, rollbacks, shadows

Only the markers and the history change; a version never does, so a shared
filesystem (NFS) or an object-store prefix synced to each worker serves it
safely: a half-synced version fails its sha256 check instead of loading.
Running workers learn about changes from the compacted models topic
(:mod:`lineguard.models.announce`), not by polling this directory.

A bundle's artifact is written in skops format, which stores objects as data
and rebuilds them without running code from the file, unlike pickle. Loading
first checks the artifact's sha256 against the manifest, then refuses any type
outside an allowlist of module prefixes, so a tampered or foreign file is
refused before any object is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lineguard.errors import LineGuardError

__all__ = [
    "TRUSTED_MODULE_PREFIXES",
    "ModelBundle",
    "ModelIntegrityError",
    "Registry",
    "RegistryError",
]

MANIFEST = "manifest.json"
ARTIFACT = "model.skops"
ACTIVE = "ACTIVE"
SHADOW = "SHADOW"
HISTORY = "HISTORY.jsonl"
BUNDLE_FORMAT = "lineguard.model.v1"
_VERSION_RE = re.compile(r"^v(\d{4,})$")
_LINE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# Types a bundle may contain. skops rebuilds these from stored attributes; it
# never calls a function named in the file.
TRUSTED_MODULE_PREFIXES = (
    "lineguard.",
    "sklearn.",
    "numpy.",
    "numpy",
    "builtins.",
    "collections.",
    "scipy.",
    "pyod.",
)


class RegistryError(LineGuardError, LookupError):
    """A line or version the registry does not have."""


class ModelIntegrityError(LineGuardError, RuntimeError):
    """An artifact that fails verification and must not be loaded."""


@dataclass(frozen=True)
class ModelBundle:
    """A loaded, verified line model.

    Attributes
    ----------
    line_id, version : str
        Which line and which immutable version.
    pipeline : object
        The fitted :class:`lineguard.detectors.pipeline.LinePipeline`.
    manifest : dict
        The envelope (see :meth:`Registry.save`).
    """

    line_id: str
    version: str
    pipeline: Any
    manifest: dict[str, Any]

    @property
    def sensors(self) -> list[str]:
        """Sensor names the model expects, in order."""
        return list(self.manifest["sensors"])

    @property
    def threshold(self) -> float:
        """Alert threshold on the anomaly score."""
        return float(self.manifest["threshold"])

    @property
    def debounce(self) -> tuple[int, int]:
        """``(k, n)``: alert when k of the last n frames exceed the threshold."""
        return int(self.manifest["debounce"]["k"]), int(self.manifest["debounce"]["n"])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries a bundle's behaviour depends on."""
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("lineguard", "numpy", "scikit-learn", "scipy", "pyod", "skops"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return versions


class Registry:
    """A directory of line models.

    Parameters
    ----------
    root : str or Path
        Registry directory; created on first save.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- reading ---------------------------------------------------------
    def lines(self) -> list[str]:
        """Lines that have at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, line_id: str) -> list[str]:
        """A line's versions, oldest first."""
        line_dir = self.root / line_id
        if not line_dir.is_dir():
            return []
        found = [p.name for p in line_dir.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def active_version(self, line_id: str) -> str | None:
        """The version workers should serve for a line, or None."""
        marker = self.root / line_id / ACTIVE
        try:
            return marker.read_text().strip() or None
        except FileNotFoundError:
            return None

    def manifest(self, line_id: str, version: str) -> dict[str, Any]:
        """A version's manifest."""
        path = self.root / line_id / version / MANIFEST
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError(
                f"no model {line_id}/{version} in {self.root}; "
                f"versions there: {self.versions(line_id) or 'none'}"
            ) from None

    def list_models(self) -> list[dict[str, Any]]:
        """Every version's manifest, with an ``active`` flag."""
        rows = []
        for line_id in self.lines():
            active = self.active_version(line_id)
            for version in self.versions(line_id):
                manifest = self.manifest(line_id, version)
                rows.append({**manifest, "active": version == active})
        return rows

    def load(self, line_id: str, version: str | None = None) -> ModelBundle:
        """Load and verify a version (the active one by default).

        Raises
        ------
        RegistryError
            When the line has no such (or no active) version.
        ModelIntegrityError
            When the artifact's hash differs from the manifest's, or the file
            holds a type outside :data:`TRUSTED_MODULE_PREFIXES`.
        """
        import skops.io as sio

        if version is None:
            version = self.active_version(line_id)
            if version is None:
                raise RegistryError(f"line {line_id!r} has no active model in {self.root}")
        manifest = self.manifest(line_id, version)
        if manifest.get("format") != BUNDLE_FORMAT:
            raise ModelIntegrityError(
                f"{line_id}/{version}: expected bundle format {BUNDLE_FORMAT!r}; "
                f"got {manifest.get('format')!r}"
            )
        artifact = self.root / line_id / version / manifest["artifact"]["file"]
        expected = manifest["artifact"]["sha256"]
        actual = _sha256(artifact)
        if actual != expected:
            raise ModelIntegrityError(
                f"{line_id}/{version}: artifact sha256 is {actual}, manifest says {expected}; "
                "refusing to load a modified file"
            )
        untrusted = sio.get_untrusted_types(file=artifact)
        foreign = [t for t in untrusted if not t.startswith(TRUSTED_MODULE_PREFIXES)]
        if foreign:
            raise ModelIntegrityError(
                f"{line_id}/{version}: artifact holds types outside the allowlist: {foreign}"
            )
        pipeline = sio.load(artifact, trusted=untrusted)
        return ModelBundle(line_id=line_id, version=version, pipeline=pipeline, manifest=manifest)

    # -- writing ---------------------------------------------------------
    def save(self, line_id: str, pipeline: Any, envelope: dict[str, Any]) -> ModelBundle:
        """Store a fitted pipeline as the line's next immutable version.

        Parameters
        ----------
        line_id : str
            The production line.
        pipeline : object
            The fitted pipeline.
        envelope : dict
            Manifest content: at least ``sensors``, ``threshold`` and
            ``debounce``; the registry adds line, version, format, time,
            library versions and the artifact hash.
        """
        import skops.io as sio

        if not _LINE_RE.match(line_id):
            raise ValueError(
                f"line id must match {_LINE_RE.pattern} (it is a Kafka key and an InfluxDB "
                f"tag); got {line_id!r}"
            )
        for key in ("sensors", "threshold", "debounce"):
            if key not in envelope:
                raise ValueError(f"envelope must contain {key!r}; got keys {sorted(envelope)}")
        line_dir = self.root / line_id
        line_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=line_dir))
        try:
            artifact = staging / ARTIFACT
            sio.dump(pipeline, artifact)
            while True:
                existing = self.versions(line_id)
                number = int(existing[-1][1:]) + 1 if existing else 1
                version = f"v{number:04d}"
                manifest = {
                    "format": BUNDLE_FORMAT,
                    "line_id": line_id,
                    "version": version,
                    "created_at": datetime.now(timezone.utc).isoformat(),
                    **envelope,
                    "libraries": library_versions(),
                    "artifact": {"file": ARTIFACT, "sha256": _sha256(artifact)},
                }
                (staging / MANIFEST).write_text(
                    json.dumps(manifest, indent=2, sort_keys=True, default=str), encoding="utf-8"
                )
                try:
                    # Atomic publish; a concurrent trainer that took the same
                    # number makes this fail, and we take the next one.
                    os.rename(staging, line_dir / version)
                    break
                except OSError:
                    if not (line_dir / version).exists():
                        raise
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return ModelBundle(line_id=line_id, version=version, pipeline=pipeline, manifest=manifest)

    def activate(
        self, line_id: str, version: str, *, action: str = "activate", note: str = ""
    ) -> str | None:
        """Make ``version`` the one workers serve for ``line_id``.

        The change is appended to the line's ``HISTORY.jsonl`` (time, action,
        from, to), which is what :meth:`rollback_target` walks back.

        Returns
        -------
        str or None
            The version that was active before.
        """
        self.manifest(line_id, version)  # raises if it does not exist
        previous = self.active_version(line_id)
        self._write_marker(line_id, ACTIVE, version)
        self._log(line_id, {"action": action, "from": previous, "to": version, "note": note})
        return previous

    def history(self, line_id: str) -> list[dict[str, Any]]:
        """The line's activation history, oldest first."""
        path = self.root / line_id / HISTORY
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(row) for row in text.splitlines() if row.strip()]

    def rollback_target(self, line_id: str) -> str:
        """The version that was served before the active one.

        The history is read as a stack: an activation or promotion pushes a
        version, a rollback pops back to the version it restored. So repeated
        rollbacks walk further back (v3 -> v2 -> v1), not back and forth.
        Without usable history, the newest version older than the active one.

        Raises
        ------
        RegistryError
            When there is no earlier version to go back to.
        """
        active = self.active_version(line_id)
        if active is None:
            raise RegistryError(f"line {line_id!r} has no active model to roll back from")
        stack: list[str] = []
        for entry in self.history(line_id):
            target = entry.get("to")
            if entry.get("action") == "rollback":
                while stack and stack[-1] != target:
                    stack.pop()
                if not stack:
                    stack.append(target)
            elif (
                entry.get("action") in ("activate", "promote")
                and target
                and (not stack or stack[-1] != target)
            ):
                stack.append(target)
        if len(stack) >= 2 and stack[-1] == active:
            return stack[-2]
        older = [v for v in self.versions(line_id) if int(v[1:]) < int(active[1:])]
        if not older:
            raise RegistryError(
                f"line {line_id!r}: {active} is active and there is no earlier version"
            )
        return older[-1]

    def shadow_version(self, line_id: str) -> str | None:
        """The candidate version scored in shadow beside the active one, or None."""
        try:
            return (self.root / line_id / SHADOW).read_text().strip() or None
        except FileNotFoundError:
            return None

    def set_shadow(self, line_id: str, version: str | None) -> None:
        """Record (or clear, with None) the line's shadow version."""
        if version is None:
            (self.root / line_id / SHADOW).unlink(missing_ok=True)
            self._log(line_id, {"action": "shadow_stop", "from": None, "to": None, "note": ""})
            return
        self.manifest(line_id, version)
        self._write_marker(line_id, SHADOW, version)
        self._log(line_id, {"action": "shadow", "from": None, "to": version, "note": ""})

    def _write_marker(self, line_id: str, name: str, version: str) -> None:
        marker = self.root / line_id / name
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(version + "\n")
        os.replace(tmp, marker)

    def _log(self, line_id: str, entry: dict[str, Any]) -> None:
        entry = {"at": datetime.now(timezone.utc).isoformat(), **entry}
        with (self.root / line_id / HISTORY).open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
