"""Evaluation over a dataset in batches: mean loss, accuracy, R^2 (one host synchronisation at the end)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp._compat import to_numpy
from flatnet_xp.losses import CLASSIFICATION_LOSSES, Loss

if TYPE_CHECKING:
    from flatnet_xp._data import Dataset
    from flatnet_xp.network import FlatMLP

__all__ = ["accuracy_counts", "mean_over_batches", "r2_score"]


def accuracy_counts(xp: Any, z: Any, y: Any, loss: str) -> Any:
    """Number of correct predictions in a batch (0-d backend array) for a classification loss."""
    if loss == "bce" or z.shape[1] == 1:
        return xp.sum(xp.astype((z > 0) == (y > 0.5), xp.float64))
    return xp.sum(xp.astype(xp.argmax(z, axis=1) == xp.argmax(y, axis=1), xp.float64))


def mean_over_batches(net: FlatMLP, data: Dataset, loss: Loss, step: int) -> tuple[float, float]:
    """Mean loss and (for classification) accuracy over ``data``, batch by batch, one sync at the end."""
    xp = net.xp
    total = correct = 0.0
    classify = loss.name in CLASSIFICATION_LOSSES
    for start in range(0, data.n, step):
        x, y = data.batch(slice(start, min(start + step, data.n)))
        z = net._forward(x, net._workspace(int(x.shape[0])))
        total = total + loss.value(xp, z, y) * x.shape[0]
        if classify:
            correct = correct + accuracy_counts(xp, z, y, loss.name)
    n_pred = data.n * (data.n_outputs if loss.name == "bce" or data.n_outputs == 1 else 1)
    acc = float(correct) / n_pred if classify else math.nan
    return float(total) / data.n, acc


def r2_score(net: FlatMLP, data: Dataset) -> float:
    """Coefficient of determination, averaged uniformly over outputs (scikit-learn's default)."""
    pred = to_numpy(net.predict(data.X)).astype(np.float64)
    y = np.asarray(to_numpy(data.Y), dtype=np.float64)
    ss_res = np.sum((y - pred) ** 2, axis=0)
    ss_tot = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res > 0, 0.0, 1.0))
    return float(np.mean(r2))
