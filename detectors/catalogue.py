"""Detector names used in line-model configs and training commands."""

from __future__ import annotations

from collections.abc import Callable

from .base import Detector
from .codebook import CodebookDetector
from .covariance import RobustMahalanobis
from .ecod import FrozenECOD
from .ensemble import QuantileEnsemble
from .iforest import IsolationForestDetector
from .pca import PCADetector

__all__ = ["AUTO", "DEFAULT_DETECTOR", "DETECTORS", "DETECTOR_NAMES", "make_detector"]

#: Factories by name; each takes the seed (ignored by deterministic detectors).
DETECTORS: dict[str, Callable[[int | None], Detector]] = {
    "pca": lambda random_state: PCADetector(),
    "ecod": lambda random_state: FrozenECOD(),
    "iforest": lambda random_state: IsolationForestDetector(random_state=random_state),
    "mcd": lambda random_state: RobustMahalanobis(random_state=random_state),
    "codebook": lambda random_state: CodebookDetector(random_state=random_state),
    "ensemble": lambda random_state: QuantileEnsemble(random_state=random_state),
}

#: Not one detector: ``train_pipeline`` picks one of
#: :data:`lineguard.detectors.selection.CANDIDATES` per line by a backtest
#: on the line's own normal runs (:mod:`lineguard.detectors.selection`).
AUTO = "auto"
#: Every name a training accepts: the detectors and ``auto``.
DETECTOR_NAMES: tuple[str, ...] = (*sorted(DETECTORS), AUTO)

#: Default chosen by the offline SKAB evaluation (``bench/skab.py``: SKAB
#: protocol, 20 valve runs, thresholds from a 1 % target FAR on held-back
#: normal rows, window 20, slow sensors by their dynamics, 2-of-5 debounce):
#: PCA T²+SPE F1 0.86 / FAR 8.0 % / MAR 19.5 %, 19 of 20 faults caught.
#: ``ensemble`` (PCA + robust Mahalanobis, see :mod:`.ensemble`) scored F1 0.84
#: / FAR 7.5 % / MAR 23.1 %; robust Mahalanobis alone misses faults where
#: its near-singular covariance lets a slightly new regime in the holdout
#: inflate the threshold. PCA is the safer default for unseen lines.
DEFAULT_DETECTOR = "pca"


def make_detector(name: str = DEFAULT_DETECTOR, random_state: int | None = 0) -> Detector:
    """Build an unfitted detector by registry name.

    Parameters
    ----------
    name : str
        One of :data:`DETECTORS` (``"pca"``, ``"ecod"``, ``"iforest"``, ``"mcd"``,
        ``"codebook"``, ``"ensemble"``). ``"auto"`` is no detector but a selection, made by
        ``train_pipeline``.
    random_state : int or None, default=0
        Seed for stochastic detectors, so retraining is reproducible.

    Returns
    -------
    Detector
        A fresh, unfitted detector with default parameters.
    """
    if name == AUTO:
        raise ValueError(
            f"{AUTO!r} is a selection among detectors made on a line's normal runs: "
            "train the line with train_pipeline(detector_name='auto'), or build one of "
            f"{sorted(DETECTORS)}."
        )
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise ValueError(
            f"Unknown detector name {name!r}; expected one of {sorted(DETECTORS)}."
        ) from None
    return factory(random_state)
