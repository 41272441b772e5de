"""scikit-learn's end-of-epoch logic as a ``fit`` callback: learning-rate schedule, stopping rules,
best weights, ``verbose`` lines.

This is ``MLP._fit_stochastic``'s per-iteration bookkeeping and ``_update_no_improvement_count``
(scikit-learn 1.9), written against one flat parameter buffer: the best parameters are ONE flat
copy, and everything runs inside a single core ``fit`` call.

The monitor knows the estimator only as a :class:`Record`: the attributes scikit-learn's loop reads
and updates. Nothing here imports the estimators (arrows run one way: ``_base`` -> ``_monitor``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from flatnet_xp.params import Snapshot

if TYPE_CHECKING:
    from flatnet_xp.history import History
    from flatnet_xp.network import FlatMLP

__all__ = ["EpochMonitor", "EpochRate", "Record", "SampleOrders", "restore", "snapshot", "squared_weight_norm",
           "subset_accuracy"]  # fmt: skip

#: ``learning_rate="adaptive"`` stops once the rate is at most this.
MIN_ADAPTIVE_RATE = 1e-6


class EpochRate:
    """scikit-learn's learning rate, changed only at epoch ends; an optimizer schedule ``lr(t)``.

    ``constant``: ``learning_rate_init`` throughout. ``invscaling``: after each epoch
    ``learning_rate_init / (t_ + 1) ** power_t`` where ``t_`` counts the SAMPLES seen. ``adaptive``:
    divided by 5 each time training stops improving (see :meth:`trigger_stopping`); training ends
    once it is at most 1e-6. The optimizer reads :attr:`current` at every step.

    Parameters
    ----------
    learning_rate_init : float
    schedule : {"constant", "invscaling", "adaptive"}
    power_t : float
    """

    def __init__(self, learning_rate_init: float, schedule: str = "constant", power_t: float = 0.5) -> None:
        self.learning_rate_init = float(learning_rate_init)
        self.schedule = schedule
        self.power_t = float(power_t)
        self.current = float(learning_rate_init)

    def __call__(self, t: int) -> float:
        return self.current

    def iteration_ends(self, samples_seen: int) -> None:
        """The end of an epoch, after ``samples_seen`` samples in all (``invscaling`` updates here)."""
        if self.schedule == "invscaling":
            self.current = self.learning_rate_init / (samples_seen + 1) ** self.power_t

    def trigger_stopping(self, message: str, verbose: bool) -> bool:
        """Training stopped improving: True to stop, or (``adaptive``) divide the rate by 5 and go on."""
        if self.schedule != "adaptive":
            if verbose:
                print(message + " Stopping.")
            return True
        if self.current <= MIN_ADAPTIVE_RATE:
            if verbose:
                print(message + " Learning rate too small. Stopping.")
            return True
        self.current /= 5.0
        if verbose:
            print(message + f" Setting learning rate to {self.current:f}")
        return False

    def __repr__(self) -> str:  # stable (no current value): the compiled JAX epoch keys on it
        return f"EpochRate({self.learning_rate_init!r}, {self.schedule!r}, power_t={self.power_t!r})"


class SampleOrders:
    """scikit-learn's sample order of each epoch: ``sample_idx = shuffle(sample_idx, random_state)``.

    Called by the core ``fit`` as ``order(epoch, n)`` once per epoch: each epoch shuffles the
    previous epoch's order, as scikit-learn's loop shuffles ``sample_idx`` in place. One object per
    ``fit`` or ``partial_fit`` call, from ``check_random_state(random_state)`` (scikit-learn's
    ``partial_fit`` starts from the data order each call, too).
    """

    def __init__(self, random_state: np.random.RandomState) -> None:
        self.random_state = random_state
        self.order: np.ndarray | None = None

    def __call__(self, epoch: int, n: int) -> np.ndarray:
        if self.order is None or self.order.shape[0] != n:
            self.order = np.arange(n)
        permutation = np.arange(n)
        self.random_state.shuffle(permutation)  # sklearn.utils.shuffle of the indices
        self.order = self.order[permutation]
        return self.order


def snapshot(net: FlatMLP, into: Any = None) -> Any:
    """A flat copy of the parameters (into ``into`` when given); JAX arrays are immutable: no copy."""
    return net.flat_params.snapshot(None if into is None else Snapshot(into)).flat


def restore(net: FlatMLP, saved: Any) -> None:
    """Put a :func:`snapshot` back."""
    net.flat_params.restore(Snapshot(saved))


def squared_weight_norm(net: FlatMLP) -> float:
    """``||w||^2`` over all weights (biases excluded): scikit-learn's L2 penalty without its factor."""
    with net.flat_params.backend.precision(net.dtype_name):
        w = net.w
        return float(net.xp.vecdot(w, w))


class Record(Protocol):
    """What the monitor reads and updates after each epoch: scikit-learn's fitted attributes.

    The estimators are Records (attributes named as scikit-learn names them); the settings
    ``verbose``, ``tol`` and ``n_iter_no_change`` are read, the rest updated.
    """

    verbose: Any
    tol: Any
    n_iter_no_change: Any
    n_iter_: int
    t_: int
    loss_: float
    loss_curve_: list[float]
    best_loss_: float | None
    validation_scores_: list[float] | None
    validation_loss_curve_: list[float] | None
    best_validation_score_: float | None
    _best_params: Any
    _no_improvement_count: int


@dataclass
class EpochMonitor:
    """The per-epoch callback: scikit-learn's loss curve, validation scores, stopping and schedule.

    Attributes
    ----------
    est : Record
        The estimator: its attributes (``n_iter_``, ``t_``, ``loss_curve_``, ...) are updated after every epoch.
    rate : EpochRate
    n_train : int
        Training samples per epoch.
    loss_factor : float
        From the core's loss (as trained) to scikit-learn's reported loss.
    l2_factor : float
        scikit-learn adds ``l2_factor * ||w||^2`` to the epoch's loss (0.5 alpha / batch size, averaged
        over the epoch's batches); ``||w||^2`` is taken at the epoch's start (exact for full batches).
    weight_norm : float
        ``||w||^2`` at the start of the coming epoch (set before training when ``l2_factor`` is not 0).
    interpolation : float
        ``(B - 1) / (2 B)`` for ``B`` batches an epoch: where the batches' mean ``||w||^2`` lies
        between the epoch's start and end.
    val_score : callable or None
        ``val_score(net, history) -> float`` with early stopping, else None (the training loss is
        monitored). With it, ``history.val_loss`` holds the core's loss on the held-out samples:
        recorded in ``validation_loss_curve_`` as ``loss_factor * val_loss + l2_factor * ||w||^2``
        (``||w||^2`` at the epoch's end: the training loss's penalty, not interpolated).
    stopped : bool
        Whether the stopping rule ended training.
    """

    est: Record
    rate: EpochRate
    n_train: int
    loss_factor: float
    l2_factor: float
    val_score: Any = None
    weight_norm: float = 0.0
    interpolation: float = 0.0
    stopped: bool = False

    def __call__(self, net: FlatMLP, history: History) -> bool:
        loss = history.loss[-1] * self.loss_factor
        penalty = 0.0
        if self.l2_factor:
            # scikit-learn takes ||w||^2 before each of the epoch's B batches: interpolated between
            # the epoch's start and end (exact for one batch, where it is the start's).
            end = squared_weight_norm(net)
            loss += self.l2_factor * (self.weight_norm + (end - self.weight_norm) * self.interpolation)
            self.weight_norm = end
            penalty = self.l2_factor * end
        if self.val_score is None:
            self.end_epoch(net, loss, None)
        else:
            val_loss = history.val_loss[-1] * self.loss_factor + penalty
            self.end_epoch(net, loss, self.val_score(net, history), val_loss)
        return self.stopped

    def end_epoch(self, net: FlatMLP, loss: float, score: float | None, val_loss: float = math.nan) -> None:
        """Record one epoch's loss (and validation score and loss) and apply the stopping rules."""
        est = self.est
        est.n_iter_ += 1
        est.t_ += self.n_train
        est.loss_ = loss
        est.loss_curve_.append(loss)
        verbose = bool(est.verbose)
        if verbose:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        tol = float(est.tol)
        if score is not None:
            assert est.validation_scores_ is not None and est.best_validation_score_ is not None
            assert est.validation_loss_curve_ is not None
            est.validation_scores_.append(score)
            est.validation_loss_curve_.append(val_loss)
            if verbose:
                print(f"Validation score: {score:f}")
            improved = not score < est.best_validation_score_ + tol  # a NaN score resets the count
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_params = snapshot(net, getattr(est, "_best_params", None))
            what = "Validation score"
        else:
            assert est.best_loss_ is not None
            improved = not loss > est.best_loss_ - tol
            est.best_loss_ = min(est.best_loss_, loss)
            what = "Training loss"
        est._no_improvement_count = 0 if improved else est._no_improvement_count + 1
        self.rate.iteration_ends(est.t_)
        if est._no_improvement_count > est.n_iter_no_change:
            message = f"{what} did not improve more than tol={tol:f} for {est.n_iter_no_change} consecutive epochs."
            if self.rate.trigger_stopping(message, verbose):
                self.stopped = True
            else:
                est._no_improvement_count = 0

    def diverged(self, net: FlatMLP) -> None:
        """An epoch produced non-finite values: scikit-learn records NaN and keeps the best weights."""
        self.end_epoch(net, math.nan, math.nan)
        self.stopped = True


def subset_accuracy(net: FlatMLP, X: Any, Y: Any, sample_weight: Any) -> float:
    """scikit-learn's multilabel ``score``: the (weighted) share of rows with EVERY label right.

    ``Y`` is the backend's indicator matrix, ``sample_weight`` None or a NumPy vector; NaN when the
    outputs are not finite (as scikit-learn's ``_score``).
    """
    xp = net.xp
    z = net.predict(X)
    if not bool(xp.all(xp.isfinite(z))):
        return math.nan
    hits = xp.astype(xp.all((z > 0) == (Y > 0.5), axis=1), xp.float64)
    if sample_weight is None:
        return float(xp.mean(hits))
    w = net.flat_params.backend.asarray(sample_weight, dtype=xp.float64)
    return float(xp.sum(hits * w) / xp.sum(w))
