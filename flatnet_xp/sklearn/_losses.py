"""scikit-learn's MLP losses (``sklearn/neural_network/_base.py``) as flatnet_xp :class:`~flatnet_xp.Loss`\\ es.

Each is a core loss (a mean over all elements, or over rows for cross-entropy) times a constant,
with the core's fused gradients. Two details are scikit-learn's own:

* its squared error reports ``0.5 * mean`` but its gradient is that of ``0.5 * k * mean`` for
  ``k`` outputs (the gradient sums over outputs): we train on the gradient's loss and report
  scikit-learn's value through a factor;
* its log losses clip the probabilities to ``[eps, 1 - eps]`` (``eps`` of the dtype) before the
  logarithm: the values here do the same (in log space, from the logits) in the same pass as the
  gradients ``p - y``, which clipping leaves unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from flatnet_xp.activations import sigmoid
from flatnet_xp.losses import LOSSES, Loss, log_softmax

__all__ = ["scikit_learn_loss"]


def _clipped(xp: Any, log_p: Any) -> Any:
    """``log(clip(p, eps, 1 - eps))`` from ``log(p)`` (``maximum``/``minimum``: cheaper than ``clip``)."""
    eps = float(xp.finfo(log_p.dtype).eps)
    return xp.minimum(xp.maximum(log_p, math.log(eps)), math.log1p(-eps))


def _weighted_sum(xp: Any, terms: Any, sw: Any) -> Any:
    return xp.sum(terms if sw is None else terms * sw)


def _log_loss(xp: Any, z: Any, y: Any, sw: Any, scale: float) -> Any:
    return _log_loss_and_grad(xp, None, z, y, None, sw, scale)[0]


def _log_loss_and_grad(xp: Any, ops: Any, z: Any, y: Any, out: Any, sw: Any, scale: float) -> tuple[Any, Any]:
    """Cross-entropy of softmax outputs, scikit-learn's clipped value; the core's fused gradient
    ``(softmax(z) - y) / n`` (``out`` None: the value only)."""
    log_p = log_softmax(xp, z)
    factor = scale / z.shape[0]
    value = -_weighted_sum(xp, y * _clipped(xp, log_p), sw) * factor
    if out is None:
        return value, None
    grad = xp.sum(y, axis=1, keepdims=True) * xp.exp(log_p) - y
    return value, ops.copy((grad if sw is None else grad * sw) * factor, out)


def _binary_log_loss(xp: Any, z: Any, y: Any, sw: Any, scale: float) -> Any:
    return _binary_log_loss_and_grad(xp, None, z, y, None, sw, scale)[0]


def _binary_log_loss_and_grad(xp: Any, ops: Any, z: Any, y: Any, out: Any, sw: Any, scale: float) -> tuple[Any, Any]:
    """Binary cross-entropy of logistic outputs per element, scikit-learn's clipped value; the core's
    gradient ``(sigmoid(z) - y) / size`` (``out`` None: the value only)."""
    soft = xp.log1p(
        xp.exp(-xp.abs(z))
    )  # log(sigmoid(z)) = -(max(-z, 0) + soft), log(1 - sigmoid(z)) = -(max(z, 0) + soft)
    log_p, log_q = -(xp.maximum(-z, 0.0) + soft), -(xp.maximum(z, 0.0) + soft)
    factor = scale / (z.shape[0] * z.shape[1])
    value = -_weighted_sum(xp, y * _clipped(xp, log_p) + (1.0 - y) * _clipped(xp, log_q), sw) * factor
    if out is None:
        return value, None
    grad = sigmoid(xp, z) - y
    return value, ops.copy((grad if sw is None else grad * sw) * factor, out)


#: name: (the core Loss with scikit-learn's values, factor trained on, factor reported), for k outputs.
_LOSSES: dict[str, tuple[Loss, Callable[[int], float], Callable[[int], float]]] = {
    "squared_error": (LOSSES["mse"], lambda k: 0.5 * k, lambda k: 0.5),
    "poisson": (LOSSES["poisson"], float, float),
    "binary_log_loss": (Loss("binary_log_loss", "binary", _binary_log_loss, _binary_log_loss_and_grad), float, float),
    "log_loss": (Loss("log_loss", "classes", _log_loss, _log_loss_and_grad), lambda k: 1.0, lambda k: 1.0),
}


def scikit_learn_loss(name: str, n_outputs: int) -> tuple[Loss, float]:
    """scikit-learn's loss ``name`` for ``n_outputs`` outputs: the Loss to train on (its gradient is
    scikit-learn's) and the factor from its values to the loss scikit-learn reports."""
    loss, train, report = _LOSSES[name]
    return loss.scaled(train(n_outputs)), report(n_outputs) / train(n_outputs)
