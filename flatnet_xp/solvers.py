"""Full-batch L-BFGS as a solver choice: ``net.fit(X, Y, optimizer=fx.LBFGS(...))``.

The solver's settings and results live here; the run itself (scipy's L-BFGS-B on the flat
parameter vector) is the engine :mod:`flatnet_xp.engines.lbfgs`.
"""

from __future__ import annotations

from typing import Any

from flatnet_xp._validation import check_int, check_real

__all__ = ["LBFGS"]


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
