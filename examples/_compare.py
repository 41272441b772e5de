"""Shared helpers of the examples: a scikit-learn MLP with the same settings, and fit timing."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any


def sklearn_mlp(cls: Any, hidden: tuple[int, ...], batch_size: int, lr: float, epochs: int) -> Any:
    """``cls`` (MLPClassifier/MLPRegressor) with ReLU, Adam, no L2 and exactly ``epochs`` epochs."""
    return cls(
        hidden_layer_sizes=hidden,
        activation="relu",
        solver="adam",
        alpha=0.0,
        batch_size=batch_size,
        learning_rate_init=lr,
        max_iter=epochs,
        tol=0.0,
        n_iter_no_change=epochs + 1,
        random_state=0,
    )


def fit_quietly(estimator: Any, X: Any, y: Any) -> Any:
    """``estimator.fit(X, y)`` without the ConvergenceWarning that a fixed epoch budget triggers."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def timed(fit: Callable[[], object], repeats: int = 3) -> float:
    """Median wall-clock seconds of ``fit()`` over ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fit()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]
