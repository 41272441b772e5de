"""Evaluation over a dataset in batches: mean loss, accuracy, R^2 (one host synchronisation at the end)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp.backends import to_numpy

if TYPE_CHECKING:
    from flatnet_xp._data import Dataset
    from flatnet_xp.losses import Loss
    from flatnet_xp.params import FlatParams

__all__ = ["Scores", "accuracy_counts", "evaluate_dataset", "raise_overflow"]


def raise_overflow(dtype_name: str, name: str) -> None:
    """The error for finite inputs whose outputs are not finite (the forward pass overflowed)."""
    hint = " or use dtype='float64'" if dtype_name == "float32" else ""
    raise ValueError(
        f"{name}: the network's outputs overflow {dtype_name} for these inputs (NaN or inf would be "
        f"answered); rescale {name}{hint}"
    )


@dataclass(frozen=True)
class Scores:
    """Mean loss, accuracy (classification losses, else NaN) and R^2 (when asked for, else NaN)."""

    loss: float
    accuracy: float
    r2: float

    def score(self, loss: Loss) -> float:
        """scikit-learn's ``score``: accuracy for classification losses, R^2 for the others."""
        return self.accuracy if loss.classification else self.r2


def accuracy_counts(xp: Any, z: Any, y: Any, loss: Loss, sw: Any = None, acc: Any = None) -> Any:
    """Number of correct predictions in a batch (0-d backend array) for a classification loss.

    With ``bce`` (or one output) every output is a separate yes/no prediction; otherwise the row's
    argmax is the predicted class. ``sw`` (``(m, 1)``) weights the rows; ``acc`` is the dtype to
    count in (float64 by default).
    """
    acc = xp.float64 if acc is None else acc
    if loss.targets == "binary" or z.shape[1] == 1:
        hits = xp.astype((z > 0) == (y > 0.5), acc)
    else:
        hits = xp.astype(xp.argmax(z, axis=1) == xp.argmax(y, axis=1), acc)[:, None]
    if sw is not None:
        hits = hits * xp.astype(sw, acc)
    return xp.sum(hits)


def _prediction(xp: Any, z: Any, loss: Loss) -> Any:
    """What the network predicts from its outputs: the rate ``exp(z)`` for Poisson, else ``z``."""
    return xp.exp(z) if loss.targets == "counts" else z


def evaluate_dataset(
    params: FlatParams, data: Dataset, loss: Loss, step: int, r2: bool = False, check: bool = False
) -> Scores:
    """Mean loss, accuracy and (``r2=True``) R^2 over ``data``, batch by batch, one sync at the end.

    With sample weights all three are weighted over the whole dataset (as scikit-learn's metrics).
    R^2 is averaged uniformly over outputs (scikit-learn's default). With ``check``, outputs that
    are not finite (finite inputs whose forward pass overflows the dtype) raise ValueError instead
    of giving a meaningless score.
    """
    xp, be = params.xp, params.backend
    acc = be.accumulation_dtype(params.dtype_name)
    total = correct = res = 0.0
    bad: Any = False
    classify = loss.classification
    # An overflow is reported below (check) as a ValueError, never as a NumPy warning.
    with be.precision(params.dtype_name), np.errstate(all="ignore"):
        for start in range(0, data.n, step):
            stop = min(start + step, data.n)
            x, y, sw = data.batch(slice(start, stop), normalize="global")
            z = params.forward(x)
            if check:
                bad = bad | ~xp.all(xp.isfinite(z))
            total = total + loss.value(xp, z, y, sw) * (stop - start)
            if classify:
                correct = correct + accuracy_counts(xp, z, y, loss, sw, acc)
            if r2:
                diff = xp.astype(_prediction(xp, z, loss) - y, acc)
                sq = diff * diff if sw is None else diff * diff * xp.astype(sw, acc)
                res = res + xp.sum(sq, axis=0)
    if check and bool(bad):
        raise_overflow(params.dtype_name, "X")
    per_row = data.n_outputs if loss.targets == "binary" or data.n_outputs == 1 else 1
    acc = float(correct) / (data.n * per_row) if classify else math.nan
    value = math.nan
    if r2:
        ss_res = np.asarray(to_numpy(res), dtype=np.float64)
        ss_tot = data.total_sum_of_squares()
        with np.errstate(divide="ignore", invalid="ignore"):
            per_output = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res > 0, 0.0, 1.0))
        # R^2 is not defined on fewer than two samples (scikit-learn's r2_score gives NaN too).
        value = float(np.mean(per_output)) if data.n >= 2 else math.nan
    return Scores(float(total) / data.n, acc, value)
