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
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp import functional as F
from flatnet_xp._compat import precision, to_numpy
from flatnet_xp._validation import check_int, check_real
from flatnet_xp.history import Callback, DivergenceError, History

if TYPE_CHECKING:
    from flatnet_xp._data import Dataset
    from flatnet_xp.losses import Loss
    from flatnet_xp.network import FlatMLP

__all__ = ["CHUNK_ROWS", "LBFGS", "fit_lbfgs"]

#: Rows evaluated at once by the full-batch objective.
CHUNK_ROWS = 8192


class LBFGS:
    """Limited-memory BFGS, full batch, on the flat parameter vector (``scipy.optimize`` L-BFGS-B).

    Use it as ``net.fit(X, Y, optimizer=fx.LBFGS(...))``: ``epochs``, ``batch_size`` and ``shuffle``
    do not apply; ``history.loss`` gets one value per L-BFGS iteration (``history.batch_loss`` one per
    function evaluation), validation and callbacks run after every iteration and ``patience`` counts
    iterations.

    Parameters
    ----------
    max_iter : int, default 200
        Largest number of iterations (scikit-learn's ``max_iter`` for ``solver="lbfgs"``).
    max_fun : int, default 15000
        Largest number of loss-and-gradient evaluations (scikit-learn's ``max_fun``).
    tol : float, default 1e-4
        Stop when the largest gradient component (projected) falls below ``tol`` (scipy's ``gtol``).
    weight_decay : float, default 0
        L2 penalty ``0.5 * weight_decay * ||w||^2`` added to the objective (weights only).
    memory : int, default 10
        Number of correction pairs kept (scipy's ``maxcor``).

    Attributes
    ----------
    n_iter_ : int
        Iterations of the last run.
    n_fun_ : int
        Function evaluations of the last run.
    converged_ : bool
        Whether scipy reported convergence (else a limit was reached).
    message_ : str
        scipy's message.
    """

    name = "lbfgs"

    def __init__(
        self,
        max_iter: int = 200,
        max_fun: int = 15000,
        tol: float = 1e-4,
        weight_decay: float = 0.0,
        memory: int = 10,
    ) -> None:
        self.max_iter = check_int("max_iter", max_iter, 1)
        self.max_fun = check_int("max_fun", max_fun, 1)
        self.tol = check_real("tol", tol, minimum=0.0)
        self.weight_decay = check_real("weight_decay", weight_decay, minimum=0.0)
        self.memory = check_int("memory", memory, 1)
        self.n_iter_ = 0
        self.n_fun_ = 0
        self.converged_ = False
        self.message_ = ""

    def hyperparameters(self) -> dict[str, Any]:
        """JSON-serialisable hyperparameters."""
        return {
            "max_iter": self.max_iter,
            "max_fun": self.max_fun,
            "tol": self.tol,
            "weight_decay": self.weight_decay,
            "memory": self.memory,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"LBFGS({args})"


class _Objective:
    """``x -> (loss, gradient)`` over the whole dataset, writing ``x`` into the network's buffer."""

    def __init__(self, net: FlatMLP, data: Dataset, loss: Loss, weight_decay: float) -> None:
        self.net, self.data, self.loss, self.wd = net, data, loss, weight_decay
        self.evaluations: list[float] = []
        be = net._be
        self.zero_copy = be.mutable and net.backend == "numpy" and net.dtype_name == "float64"
        self.acc: Any = None
        if be.mutable:
            net.grads  # noqa: B018 - allocates the gradient buffer and its views
            if data.n > CHUNK_ROWS:
                self.acc = be.xp.zeros_like(net.grads)

    def set_x(self, x: np.ndarray) -> None:
        net, be = self.net, self.net._be
        if self.zero_copy:
            np.copyto(net.params, x)
        elif be.mutable:
            be.ops.copy(be.asarray(x, dtype=net.dtype), net.params)
        else:
            net.params = be.asarray(x, dtype=net.dtype)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.set_x(x)
        net, data = self.net, self.data
        be = net._be
        value = 0.0
        flat: Any = None
        with precision(be, net.dtype):
            for lo in range(0, data.n, CHUNK_ROWS):
                hi = min(lo + CHUNK_ROWS, data.n)
                xb, yb, sw = data.batch(slice(lo, hi), normalize="global")
                part = (hi - lo) / data.n
                v, g = self._chunk(xb, yb, sw)
                value += float(v) * part
                if data.n <= CHUNK_ROWS:
                    flat = g
                elif lo == 0:
                    flat = be.ops.imul(be.ops.copy(g, self.acc), part)
                else:
                    flat = be.ops.iadd(flat, g * part)
            if self.wd:
                w_len = net.layout.w_len
                w = net.params[:w_len]
                value += 0.5 * self.wd * float(be.xp.vecdot(w, w))
                flat = be.ops.slice_add(flat, 0, w_len, w * self.wd)
        self.evaluations.append(value)
        grad = flat if self.zero_copy else np.asarray(to_numpy(flat), dtype=np.float64)
        return value, grad

    def _chunk(self, xb: Any, yb: Any, sw: Any) -> tuple[Any, Any]:
        net = self.net
        if not net._be.mutable:
            from flatnet_xp.compiled import loss_and_grad

            return loss_and_grad(net, xb, yb, sw, self.loss)
        ws = net._workspace(int(xb.shape[0]))
        v, _ = F.loss_and_grad(net._spec, net._views, xb, yb, sw, self.loss, ws, net._grad_views)
        return v, net.grads


def fit_lbfgs(
    net: FlatMLP,
    data: Dataset,
    val: Dataset | None,
    loss: Loss,
    solver: LBFGS,
    callbacks: list[Callback],
    patience: int | None,
    min_delta: float,
) -> History:
    """Minimise the full-batch objective with scipy's L-BFGS-B; see :class:`LBFGS`."""
    import scipy.optimize

    from flatnet_xp.metrics import evaluate_dataset

    objective = _Objective(net, data, loss, solver.weight_decay)
    history = History()
    x0 = np.asarray(to_numpy(net.params), dtype=np.float64).copy()
    best: dict[str, Any] = {"value": math.inf, "x": None, "epoch": None, "wait": 0}
    net.loss_ = loss.name if loss.scale == 1.0 else loss

    def after_iteration(intermediate_result: Any) -> None:  # scipy passes an OptimizeResult by this name
        intermediate = intermediate_result
        history.loss.append(float(intermediate.fun))
        monitored = float(intermediate.fun)
        if val is not None or callbacks:
            objective.set_x(intermediate.x)
        if val is not None:
            scores = evaluate_dataset(net, val, loss, 4096, r2=not loss.classification)
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
            stop = (cb(net, history) is True) or stop
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
    if not np.all(np.isfinite(x)):
        objective.set_x(x0)
        raise DivergenceError(
            "L-BFGS produced non-finite parameters; the initial parameters were restored: scale the data", 1, None
        )
    objective.set_x(x)
    return history
