"""The estimators' parameters checked at ``fit``: a ValueError or TypeError naming the parameter."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from flatnet_xp._validation import check_dtype

__all__ = ["ACTIVATIONS", "SCHEDULES", "SOLVERS", "STOCHASTIC_SOLVERS", "check_choice", "check_params",
           "random_state_of", "stochastic"]  # fmt: skip

#: scikit-learn's activation names -> flatnet_xp's (``leaky_relu`` is flatnet_xp's addition).
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
               "leaky_relu": "leaky_relu"}  # fmt: skip
#: ``learning_rate`` values (scikit-learn's ``SGDOptimizer`` ``lr_schedule``).
SCHEDULES = ("constant", "invscaling", "adaptive")
SOLVERS = ("lbfgs", "sgd", "adam", "adamw")
STOCHASTIC_SOLVERS = ("sgd", "adam", "adamw")


def check_number(est: Any, name: str, low: float, high: float, *, integer: bool = False, open_low: bool = False,
                 open_high: bool = False, extra: tuple[Any, ...] = ()) -> None:  # fmt: skip
    """``est.<name>`` is a number (an integer) in the interval, or one of ``extra``."""
    value = getattr(est, name)
    if any(value is e or value == e for e in extra):
        return
    kind = numbers.Integral if integer else numbers.Real
    lo, hi = "(" if open_low else "[", ")" if open_high else "]"
    want = f"{'an integer' if integer else 'a number'} in {lo}{low}, {high}{hi}" + "".join(f" or {e}" for e in extra)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name}: expected {want}, got {value!r}")
    v = float(value)
    if math.isnan(v) or v < low or v > high or (open_low and v == low) or (open_high and v == high):
        raise ValueError(f"{name}: expected {want}, got {value!r}")


def check_choice(est: Any, name: str, choices: tuple[Any, ...]) -> None:
    """``est.<name>`` is one of ``choices``."""
    value = getattr(est, name)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")


def check_params(est: Any) -> tuple[int, ...]:
    """Check the parameters the two estimators share; returns the hidden layer sizes."""
    given = est.hidden_layer_sizes
    hidden = (given,) if isinstance(given, numbers.Integral) else given
    try:
        sizes = tuple(hidden)
    except TypeError:
        raise TypeError(f"hidden_layer_sizes: expected an int or a sequence of ints, got {given!r}") from None
    if not all(isinstance(h, numbers.Integral) and not isinstance(h, bool) and int(h) > 0 for h in sizes):
        raise ValueError(f"hidden_layer_sizes: expected positive integers, got {given!r}")
    check_choice(est, "activation", tuple(ACTIVATIONS))
    check_choice(est, "solver", SOLVERS)
    check_choice(est, "learning_rate", SCHEDULES)
    if not (isinstance(est.batch_size, str) and est.batch_size == "auto"):
        check_number(est, "batch_size", 1, math.inf, integer=True)
    for name in ("alpha", "power_t", "tol"):
        check_number(est, name, 0.0, math.inf)
    check_number(est, "learning_rate_init", 0.0, math.inf, open_low=True)
    check_number(est, "epsilon", 0.0, math.inf, open_low=True)
    check_number(est, "momentum", 0.0, 1.0)
    for name in ("validation_fraction", "beta_1", "beta_2"):
        check_number(est, name, 0.0, 1.0, open_high=True)
    for name in ("max_iter", "max_fun"):
        check_number(est, name, 1, math.inf, integer=True)
    check_number(est, "n_iter_no_change", 1, math.inf, integer=True, extra=(np.inf,))
    check_number(est, "n_models", 1, math.inf, integer=True)
    if est.n_models > 1 and est.solver == "lbfgs":
        raise ValueError("n_models: an ensemble trains with a stochastic solver (sgd, adam, adamw), got solver='lbfgs'")
    for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping", "bootstrap"):
        if not isinstance(getattr(est, name), bool | np.bool_):
            raise TypeError(f"{name}: expected True or False, got {getattr(est, name)!r}")
    if est.dtype is not None:
        check_dtype(est.dtype)
    return tuple(int(h) for h in sizes)


def random_state_of(est: Any) -> np.random.RandomState:
    """scikit-learn's ``check_random_state(est.random_state)``, the error naming ``random_state``."""
    try:
        return check_random_state(est.random_state)
    except ValueError:
        raise ValueError(
            f"random_state: expected None, an int or a numpy.random.RandomState, got {est.random_state!r}"
        ) from None


def stochastic(est: Any) -> bool:
    """``available_if`` condition of ``partial_fit`` (scikit-learn's message)."""
    if est.solver not in STOCHASTIC_SOLVERS:
        raise AttributeError(
            f"partial_fit is only available for stochastic optimizers. {est.solver} is not stochastic."
        )
    return True
