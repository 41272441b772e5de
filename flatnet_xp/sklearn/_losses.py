"""scikit-learn's MLP losses (``sklearn/neural_network/_base.py``) as flatnet_xp :class:`~flatnet_xp.Loss`\\ es.

Each is a core loss (a mean over all elements, or over rows for cross-entropy) times a constant,
so gradients are the core's fused ones. Two details are scikit-learn's own:

* its squared error reports ``0.5 * mean`` but its gradient is that of ``0.5 * k * mean`` for
  ``k`` outputs (the gradient sums over outputs): we train on the gradient's loss and report
  scikit-learn's value through a factor;
* its log losses clip the probabilities to ``[eps, 1 - eps]`` (``eps`` of the dtype) before the
  logarithm: the values recorded here do the same (in log space, from the logits), the gradients
  ``p - y`` are unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from flatnet_xp.losses import LOSSES, Loss, log_softmax

__all__ = ["scikit_learn_loss"]


def _clipped(xp: Any, log_p: Any) -> Any:
    """``log(clip(p, eps, 1 - eps))`` from ``log(p)``."""
    eps = float(xp.finfo(log_p.dtype).eps)
    return xp.clip(log_p, math.log(eps), math.log1p(-eps))


def _softplus(xp: Any, x: Any) -> Any:
    return xp.maximum(x, 0.0) + xp.log1p(xp.exp(-xp.abs(x)))


def _log_loss_terms(xp: Any, z: Any, y: Any) -> Any:
    return -(y * _clipped(xp, log_softmax(xp, z)))


def _binary_log_loss_terms(xp: Any, z: Any, y: Any) -> Any:
    # log(sigmoid(z)) = -softplus(-z), log(1 - sigmoid(z)) = -softplus(z)
    return -(y * _clipped(xp, -_softplus(xp, -z)) + (1.0 - y) * _clipped(xp, -_softplus(xp, z)))


def _clipping(base: Loss, name: str, terms: Callable[[Any, Any, Any], Any], per_row: bool) -> Loss:
    """``base`` with scikit-learn's clipped values (its gradient unchanged)."""

    def value(xp: Any, z: Any, y: Any, sw: Any, scale: float) -> Any:
        t = terms(xp, z, y)
        if sw is not None:
            t = t * sw
        count = z.shape[0] if per_row else z.shape[0] * z.shape[1]
        return xp.sum(t) * (scale / count)

    def value_and_grad(xp: Any, ops: Any, z: Any, y: Any, out: Any, sw: Any, scale: float) -> tuple[Any, Any]:
        _, grad = base._value_and_grad(xp, ops, z, y, out, sw, scale)
        return value(xp, z, y, sw, scale), grad

    return Loss(name, base.targets, value, value_and_grad)


#: name: (the core Loss with scikit-learn's values, factor trained on, factor reported), for k outputs.
_LOSSES: dict[str, tuple[Loss, Callable[[int], float], Callable[[int], float]]] = {
    "squared_error": (LOSSES["mse"], lambda k: 0.5 * k, lambda k: 0.5),
    "poisson": (LOSSES["poisson"], float, float),
    "binary_log_loss": (_clipping(LOSSES["bce"], "binary_log_loss", _binary_log_loss_terms, False), float, float),
    "log_loss": (_clipping(LOSSES["cross_entropy"], "log_loss", _log_loss_terms, True), lambda k: 1.0, lambda k: 1.0),
}


def scikit_learn_loss(name: str, n_outputs: int) -> tuple[Loss, float]:
    """scikit-learn's loss ``name`` for ``n_outputs`` outputs: the Loss to train on (its gradient is
    scikit-learn's) and the factor from its values to the loss scikit-learn reports."""
    loss, train, report = _LOSSES[name]
    return loss.scaled(train(n_outputs)), report(n_outputs) / train(n_outputs)
