"""Isolation forest wrapper with LineGuard's sign convention and attribution.

An isolation forest isolates rows with random axis-aligned splits; rows that
are isolated in few splits are rare. It makes no distributional assumption
and copes with multi-modal normal operation (several recipes on one line),
but it cannot see a broken correlation that stays inside every column's
normal range as well as PCA can.

scikit-learn's ``score_samples`` is *higher for normal* rows; this wrapper
negates it explicitly so that higher means more anomalous (in [0, 1]).

Frozen for serving: scikit-learn scores a forest one tree at a time, each
through joblib and input validation: a line's scoring stage cost about 20
times PCA's (2.19 s against 0.11 s per pass of a 10-line, 50-sensor fleet).
After ``fit`` the trees are kept as flat node arrays, and every row walks all
trees at once, one vectorized step per tree level (``bench/iforest_cost.py``:
2.4 times faster than scikit-learn's scoring of the same trees). The arithmetic is
scikit-learn's (float32 inputs against float64 split values, each tree's
path length added in tree order), so the scores are the same bits.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

from .base import NO_SPREAD, Detector, normalize_rows

__all__ = ["IsolationForestDetector"]


class IsolationForestDetector(Detector):
    """Isolation forest scored as ``-IsolationForest.score_samples``.

    Parameters
    ----------
    n_estimators : int, default=200
        Number of trees; more trees give smoother, more repeatable scores.
    max_samples : int or float or "auto", default="auto"
        Rows drawn per tree (scikit-learn semantics).
    max_features : float, default=1.0
        Fraction of columns drawn per tree.
    random_state : int or None, default=0
        Seed; fixed by default so a retrained line model is reproducible.

    Attributes
    ----------
    n_features_in_ : int
    roots_ : ndarray of int, shape (n_trees,)
        Each tree's first node in the flat node arrays below.
    feature_, threshold_ : ndarray of shape (n_nodes,)
        Each node's split column (into the input columns) and split value
        (``+inf`` at leaves).
    children_ : ndarray of int, shape (2 * n_nodes,)
        Left and right child of each node, interleaved; a leaf is its own
        child, so a walk stays there.
    path_length_ : ndarray of shape (n_nodes,)
        At a leaf: its depth plus the average path length of the training
        rows it holds, minus 1 (scikit-learn's per-tree depth).
    levels_ : int
        Steps of the walk: the most splits between a root and a leaf.
    denominator_ : float
        ``n_trees`` times the average path length of a tree's sample.
    center_, scale_ : ndarray of shape (n_features,)
        Training median and robust spread (IQR / 1.349, falling back to the
        standard deviation; infinite for a column without spread, which
        takes no share), used only for attribution.

    Notes
    -----
    A forest has no exact additive decomposition of its score, so
    :meth:`contributions` reports each column's squared robust z-score
    share: the columns furthest from their normal median, in units of their
    normal spread. It is a proxy that agrees with the forest on the
    single-sensor excursions plant QA mostly asks about.
    """

    def __init__(
        self,
        n_estimators: int = 200,
        max_samples: int | float | str = "auto",
        max_features: float = 1.0,
        random_state: int | None = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: object = None) -> IsolationForestDetector:
        """Grow the forest on normal rows and record robust column scales."""
        X = self._validate_fit_input(X)
        self.n_features_in_ = X.shape[1]
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            max_features=self.max_features,
            random_state=self.random_state,
        ).fit(X)
        self._freeze(forest)
        self.center_ = np.median(X, axis=0)
        q75, q25 = np.percentile(X, [75, 25], axis=0)
        iqr_sigma = (q75 - q25) / 1.349
        std = X.std(axis=0)
        # A column without spread takes no share (an infinite scale, as in
        # base.feature_scale): the forest never split on it, so it is no
        # part of the score that a share would explain.
        self.scale_ = np.where(
            iqr_sigma > NO_SPREAD, iqr_sigma, np.where(std > NO_SPREAD, std, np.inf)
        )
        return self

    def _freeze(self, forest: IsolationForest) -> None:
        """Keep the fitted trees as flat node arrays (module docs)."""
        trees = [e.tree_ for e in forest.estimators_]
        offsets = np.cumsum([0] + [t.node_count for t in trees])
        total = int(offsets[-1])
        feature = np.zeros(total, dtype=np.int32)
        threshold = np.full(total, np.inf)
        children = np.zeros(2 * total, dtype=np.int32)
        path = np.zeros(total)
        levels = 0
        for tree, columns, at in zip(trees, forest.estimators_features_, offsets, strict=False):
            nodes = slice(at, at + tree.node_count)
            own = np.arange(tree.node_count) + at
            leaf = tree.children_left == -1
            feature[nodes] = np.where(leaf, 0, np.asarray(columns)[np.maximum(tree.feature, 0)])
            threshold[nodes] = np.where(leaf, np.inf, tree.threshold)
            children[2 * at : 2 * (at + tree.node_count) : 2] = np.where(
                leaf, own, tree.children_left + at
            )
            children[2 * at + 1 : 2 * (at + tree.node_count) : 2] = np.where(
                leaf, own, tree.children_right + at
            )
            depth = tree.compute_node_depths()
            # The per-tree term of scikit-learn's depths, in its order of operations.
            path[nodes] = depth + _average_path_length(tree.n_node_samples) - 1.0
            levels = max(levels, int(depth[leaf].max()) - 1)
        self.roots_ = offsets[:-1].astype(np.int32)
        self.feature_, self.threshold_, self.children_ = feature, threshold, children
        self.path_length_ = path
        self.levels_ = levels
        max_samples = np.array([forest.max_samples_])
        self.denominator_ = len(trees) * float(_average_path_length(max_samples)[0])

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Negated scikit-learn ``score_samples`` (higher = more anomalous)."""
        X = self._validate_score_input(X)
        if not hasattr(self, "roots_"):  # saved before the forest was frozen
            return -self.forest_.score_samples(X)
        # The trees compare float32 inputs with float64 split values.
        flat = X.astype(np.float32).ravel()
        n, d = X.shape
        # 32-bit positions halve the memory each step walks through.
        index = np.int32 if n * d < 2**31 else np.intp
        row = (np.arange(n, dtype=index) * index(d))[:, None]
        node = np.repeat(self.roots_[None, :], n, axis=0)  # (rows, trees)
        for _ in range(self.levels_):
            x = flat.take(row + self.feature_.take(node))
            right = x > self.threshold_.take(node)
            node = self.children_.take(2 * node + right)
        lengths = self.path_length_.take(node)
        depths = np.zeros(n)
        for j in range(lengths.shape[1]):  # tree order, as scikit-learn adds them
            depths += lengths[:, j]
        return 2.0 ** (-(depths / self.denominator_))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Share of each column's squared robust z-score (see Notes)."""
        X = self._validate_score_input(X)
        return normalize_rows(((X - self.center_) / self.scale_) ** 2)
