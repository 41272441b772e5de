"""The batches of an epoch, and the verdict on an epoch's numbers: one plan for every engine."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from flatnet_xp.history import DivergenceError

__all__ = ["BatchPlan", "check_epoch"]


@dataclass(frozen=True)
class BatchPlan:
    """``n`` samples in batches of ``batch_size`` (the last one smaller when it does not divide ``n``).

    Attributes
    ----------
    n : int
    batch_size : int
        At most ``n``.
    n_batches : int
    batch_sizes : numpy.ndarray, shape (n_batches,)
        Rows of each batch (float64, to weight the batch losses into the epoch's loss).
    """

    n: int
    batch_size: int
    n_batches: int = field(init=False)
    batch_sizes: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "batch_size", min(self.batch_size, self.n))
        n_batches = -(-self.n // self.batch_size)
        object.__setattr__(self, "n_batches", n_batches)
        sizes = np.minimum(self.batch_size, self.n - np.arange(n_batches) * self.batch_size).astype(np.float64)
        object.__setattr__(self, "batch_sizes", sizes)

    @property
    def n_full(self) -> int:
        """Batches of exactly ``batch_size`` rows."""
        return self.n // self.batch_size

    @property
    def last_size(self) -> int:
        """Rows of the last batch."""
        return self.n - (self.n_batches - 1) * self.batch_size

    def rows(self, step: int, order: np.ndarray | None) -> slice | np.ndarray:
        """The rows of batch ``step``: a slice in data order, else indices of ``order``."""
        lo = step * self.batch_size
        hi = min(lo + self.batch_size, self.n)
        return slice(lo, hi) if order is None else order[lo:hi]

    def epoch_loss(self, losses: np.ndarray) -> float:
        """The epoch's loss: the batch losses weighted by their rows."""
        return float(losses @ self.batch_sizes) / self.n


def check_epoch(epoch: int, losses: np.ndarray, state_finite: bool) -> None:
    """The verdict on an epoch checked as a whole (GPU, compiled JAX): raise
    :class:`~flatnet_xp.DivergenceError` unless every loss and the parameters and state are finite.

    A finite sum means finite losses; only a sum that overflowed needs the element-wise test.
    """
    if not (state_finite and (math.isfinite(losses.sum()) or bool(np.all(np.isfinite(losses))))):
        raise DivergenceError.epoch_restored(epoch, losses)
