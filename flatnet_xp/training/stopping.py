"""Early stopping: the best monitored loss and ONE flat copy of the best parameters."""

from __future__ import annotations

import math

from flatnet_xp.params import FlatParams, Snapshot

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Tracks the best monitored loss; keeps the parameters of the best epoch as one snapshot.

    Parameters
    ----------
    params : FlatParams
    patience : int
        Epochs without an improvement of more than ``min_delta`` before training stops.
    min_delta : float
    """

    def __init__(self, params: FlatParams, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self.best_epoch: int | None = None
        self.wait = 0
        self.best_params: Snapshot = params.snapshot()

    def update(self, params: FlatParams, value: float, epoch: int) -> bool:
        """Record the monitored loss of ``epoch`` (counted from 1); True when training should stop."""
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_params = params.snapshot(self.best_params)
            return False
        self.wait += 1
        return self.wait >= self.patience

    def restore(self, params: FlatParams) -> bool:
        """Put the best parameters back; True when that changed them."""
        if self.best_epoch is None:
            return False
        params.restore(self.best_params)
        return True
