"""What phase one of a fit hands phase two: the encoded targets and the checked plan of the fit.

Data only (and the one context manager that undoes a failed phase one); the estimators build them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from flatnet_xp.network import FlatMLP
from flatnet_xp.sklearn._monitor import SampleOrders

__all__ = ["NONFINITE_MESSAGE", "Plan", "Targets", "unchanged_on_error", "warn_max_iter"]

#: scikit-learn's message when training leaves non-finite weights (a ValueError).
NONFINITE_MESSAGE = (
    "Solver produced non-finite parameter weights. The input data may contain large values and need to be preprocessed."
)


@dataclass
class Targets:
    """Encoded targets of a fit (host arrays) and the output layer they call for."""

    T: np.ndarray
    loss: str
    out_activation: str
    n_outputs: int
    stratify: np.ndarray | None = None


@dataclass
class Plan:
    """Everything phase one checked and built; phase two only commits and trains."""

    first: bool
    net: FlatMLP
    orders: SampleOrders
    X: Any
    T: np.ndarray
    sample_weight: np.ndarray | None
    val: tuple[Any, np.ndarray, np.ndarray | None] | None
    batch_size: int
    targets: Targets


@contextlib.contextmanager
def unchanged_on_error(est: Any) -> Iterator[None]:
    """Undo every attribute change made inside the block when it raises."""
    saved = dict(est.__dict__)
    try:
        yield
    except BaseException:
        est.__dict__.clear()
        est.__dict__.update(saved)
        raise


def warn_max_iter(max_iter: int, stacklevel: int) -> None:
    """scikit-learn's ConvergenceWarning when a stochastic fit ran all ``max_iter`` epochs."""
    from sklearn.exceptions import ConvergenceWarning

    warnings.warn(
        f"Stochastic Optimizer: Maximum iterations ({max_iter}) reached and the optimization hasn't converged yet.",
        ConvergenceWarning,
        stacklevel=stacklevel + 1,
    )
