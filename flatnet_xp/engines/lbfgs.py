"""Full-batch L-BFGS on the flat parameter vector, through scipy's L-BFGS-B (scikit-learn's engine).

This is where the flat layout pays most: scikit-learn packs its list of coefficient arrays into a
new vector and unpacks it at every function evaluation; here the parameter buffer IS that vector.
On NumPy in float64 the objective copies scipy's ``x`` into the buffer (scipy hands out copies of
its own) and returns the gradient buffer itself, with no packing; in float32 and on other backends
one conversion of the flat vector each way per evaluation (on GPUs: one host copy).

The objective is the full-data loss (the weighted average with sample weights) plus
``0.5 * weight_decay * ||w||^2`` on the weights (biases exempt), with its exact gradient.
Large datasets are evaluated in chunks of :data:`CHUNK_ROWS` rows, so memory stays bounded (a
scipy.sparse ``X`` is densified one chunk at a time).

Divergence: a loss or gradient that is not finite at the starting point, or a run that scipy ends
abnormally after meeting one, raises :class:`~flatnet_xp.DivergenceError` with the starting
parameters restored, as every other optimizer raises it (a converged run whose line search merely
probed such a point returns normally).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp.backends import to_numpy
from flatnet_xp.history import Callback, DivergenceError, History
from flatnet_xp.metrics import evaluate_dataset
from flatnet_xp.params import FlatParams

if TYPE_CHECKING:
    from flatnet_xp._data import Dataset
    from flatnet_xp.losses import Loss
    from flatnet_xp.solvers import LBFGS

__all__ = ["CHUNK_ROWS", "fit_lbfgs"]

#: Rows evaluated at once by the full-batch objective.
CHUNK_ROWS = 8192
#: Rows per batch when evaluating validation data.
EVAL_ROWS = 4096


class _Objective:
    """``x -> (loss, gradient)`` over the whole dataset, writing ``x`` into the parameter buffer."""

    def __init__(self, params: FlatParams, data: Dataset, loss: Loss, weight_decay: float) -> None:
        self.params, self.data, self.loss, self.wd = params, data, loss, weight_decay
        self.evaluations: list[float] = []
        self.met_nonfinite = False
        be = params.backend
        self.zero_copy = be.name == "numpy" and params.dtype_name == "float64"
        self.acc: Any = None
        if be.mutable and data.n > CHUNK_ROWS:
            self.acc = params.xp.zeros_like(params.grads)

    def set_x(self, x: np.ndarray) -> None:
        p = self.params
        p.assign(x if self.zero_copy else p.backend.asarray(x, dtype=p.dtype))

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.set_x(x)
        p, data = self.params, self.data
        be = p.backend
        value = 0.0
        flat: Any = None
        for lo in range(0, data.n, CHUNK_ROWS):
            hi = min(lo + CHUNK_ROWS, data.n)
            xb, yb, sw = data.batch(slice(lo, hi), normalize="global")
            part = (hi - lo) / data.n
            v = p.loss_and_grad_into(xb, yb, sw, self.loss)
            g = p.grads
            value += float(v) * part
            if data.n <= CHUNK_ROWS:
                flat = g
            elif lo == 0:
                flat = be.ops.imul(be.ops.copy(g, self.acc), part)
            else:
                flat = be.ops.iadd(flat, g * part)
        if self.wd:
            w_len = p.layout.w_len
            w = p.flat[:w_len]
            value += 0.5 * self.wd * float(p.xp.vecdot(w, w))
            flat = be.ops.slice_add(flat, 0, w_len, w * self.wd)
        self.evaluations.append(value)
        grad = flat if self.zero_copy else np.asarray(to_numpy(flat), dtype=np.float64)
        if not (math.isfinite(value) and np.all(np.isfinite(grad))):
            self.met_nonfinite = True
        return value, grad


def fit_lbfgs(
    params: FlatParams,
    data: Dataset,
    val: Dataset | None,
    loss: Loss,
    solver: LBFGS,
    callbacks: Sequence[Callback],
    model: Any,
    patience: int | None,
    min_delta: float,
) -> History:
    """Minimise the full-batch objective with scipy's L-BFGS-B; see :class:`~flatnet_xp.LBFGS`.

    ``callbacks`` are called as ``callback(model, history)`` after each iteration.
    """
    import scipy.optimize

    objective = _Objective(params, data, loss, solver.weight_decay)
    history = History()
    x0 = np.asarray(to_numpy(params.flat), dtype=np.float64).copy()
    best: dict[str, Any] = {"value": math.inf, "x": None, "epoch": None, "wait": 0}

    def after_iteration(intermediate_result: Any) -> None:  # scipy passes an OptimizeResult by this name
        intermediate = intermediate_result
        history.loss.append(float(intermediate.fun))
        monitored = float(intermediate.fun)
        if val is not None or callbacks:
            objective.set_x(intermediate.x)
        if val is not None:
            scores = evaluate_dataset(params, val, loss, EVAL_ROWS, r2=not loss.classification)
            history.val_loss.append(scores.loss)
            history.val_score.append(scores.score(loss))
            if loss.classification:
                history.val_accuracy.append(scores.accuracy)
            monitored = scores.loss
        stop = False
        if patience is not None:
            if monitored < best["value"] - min_delta:
                best.update(value=monitored, x=np.array(intermediate.x), epoch=history.epochs, wait=0)
            else:
                best["wait"] += 1
                stop = best["wait"] >= patience
        for cb in callbacks:
            stop = (cb(model, history) is True) or stop
        if stop:
            history.stopped_early = True
            raise StopIteration

    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        result = scipy.optimize.minimize(
            objective,
            x0,
            method="L-BFGS-B",
            jac=True,
            callback=after_iteration,
            options={"maxiter": solver.max_iter, "maxfun": solver.max_fun, "gtol": solver.tol, "maxcor": solver.memory},
        )
    x = best["x"] if best["x"] is not None else result.x
    history.best_epoch = best["epoch"]
    history.batch_loss = list(objective.evaluations)
    solver.n_iter_, solver.n_fun_ = int(result.nit), int(result.nfev)
    solver.converged_, solver.message_ = bool(result.success), str(result.message)
    diverged = not np.all(np.isfinite(x)) or (objective.met_nonfinite and not result.success)
    if diverged and not history.stopped_early:
        objective.set_x(x0)
        raise DivergenceError(
            f"L-BFGS met a non-finite loss or gradient (scipy: {solver.message_ or 'no message'}); the initial "
            "parameters were restored: scale the data (or use dtype='float64')",
            1,
            None,
        )
    objective.set_x(x)
    return history
