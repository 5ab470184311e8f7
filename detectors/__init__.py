"""Per-line anomaly detectors, temporal features, calibration and the scoring hot path.

Modules: :mod:`.base` (the ``Detector`` contract), one module per detector
(:mod:`.pca`, :mod:`.ecod`, :mod:`.iforest`, :mod:`.covariance`,
:mod:`.codebook`, :mod:`.ensemble`), :mod:`.selection` (``auto``, the default: a
detector picked per line by a backtest on its own normal runs),
:mod:`.features` (streaming trailing-window features), :mod:`.scoring`
(``LinePipeline`` and the pure ``score_batch``), :mod:`.calibration`
(thresholds from a target false-alarm rate) and :mod:`.catalogue` (names).
"""

from .base import Detector
from .calibration import (
    DEFAULT_DETREND_SLOW,
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_TARGET_FAR,
    DEFAULT_WINDOW,
    TRAINING_DEFAULTS,
    TrainingDefaults,
    fit_threshold,
    train_pipeline,
)
from .catalogue import DEFAULT_DETECTOR, DETECTORS, make_detector
from .codebook import CodebookDetector
from .covariance import RobustMahalanobis
from .ecod import FrozenECOD
from .ensemble import QuantileEnsemble
from .features import TemporalFeatures
from .iforest import IsolationForestDetector
from .pca import PCADetector
from .scoring import (
    DEFAULT_DEBOUNCE,
    BatchResult,
    LinePipeline,
    ScoringState,
    debounce,
    score_batch,
)

__all__ = [
    "DEFAULT_DEBOUNCE",
    "DEFAULT_DETECTOR",
    "DEFAULT_DETREND_SLOW",
    "DEFAULT_HOLDOUT_FRACTION",
    "DEFAULT_TARGET_FAR",
    "DEFAULT_WINDOW",
    "DETECTORS",
    "TRAINING_DEFAULTS",
    "BatchResult",
    "CodebookDetector",
    "Detector",
    "FrozenECOD",
    "IsolationForestDetector",
    "LinePipeline",
    "PCADetector",
    "QuantileEnsemble",
    "RobustMahalanobis",
    "ScoringState",
    "TemporalFeatures",
    "TrainingDefaults",
    "debounce",
    "fit_threshold",
    "make_detector",
    "score_batch",
    "train_pipeline",
]
