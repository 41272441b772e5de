"""Loss functions (means as PyTorch computes them) with their gradients w.r.t. the network output.

Each loss is a pair over a batch of outputs ``z`` and float targets ``y``, both ``(batch, L_out)``:

``value(xp, z, y) -> loss``
    a 0-d array (kept on the device: no host synchronisation);
``value_and_grad(xp, ops, z, y, out) -> loss``
    the same, and ``dL/dz`` written into ``out`` (shape of ``z``).

Cross-entropy and binary cross-entropy take LOGITS and are computed stably (max-shifted
log-sum-exp, ``log1p(exp(-|z|))``); their gradients are the fused ``(softmax(z) - y) / batch`` and
``(sigmoid(z) - y) / size``. Integer class labels are turned into one-hot rows before they get here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flatnet_xp.activations import sigmoid

__all__ = ["CLASSIFICATION_LOSSES", "LOSSES", "Loss", "log_softmax", "softmax"]


@dataclass(frozen=True)
class Loss:
    """A loss: its name, ``value`` and ``value_and_grad`` as described in the module doc."""

    name: str
    value: Callable[[Any, Any, Any], Any]
    value_and_grad: Callable[[Any, Any, Any, Any, Any], Any]


def _size(z: Any) -> int:
    return int(z.shape[0]) * int(z.shape[1])


def _mse_value(xp: Any, z: Any, y: Any) -> Any:
    r = z - y
    return xp.sum(r * r) / _size(z)


def _mse_value_and_grad(xp: Any, ops: Any, z: Any, y: Any, out: Any) -> Any:
    r = ops.subtract(z, y, out=out)
    size = _size(z)
    loss = ops.total(r * r) / size
    r *= 2.0 / size
    return loss


def log_softmax(xp: Any, z: Any) -> Any:
    """Row-wise ``log(softmax(z))`` with the max-shift: no overflow for any logits."""
    shifted = z - xp.max(z, axis=1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def softmax(xp: Any, z: Any) -> Any:
    """Row-wise softmax of logits ``z`` (``(n, k)``), max-shifted."""
    e = xp.exp(z - xp.max(z, axis=1, keepdims=True))
    return e / xp.sum(e, axis=1, keepdims=True)


def _ce_value(xp: Any, z: Any, y: Any) -> Any:
    return -xp.sum(y * log_softmax(xp, z)) / z.shape[0]


def _ce_value_and_grad(xp: Any, ops: Any, z: Any, y: Any, out: Any) -> Any:
    logp = log_softmax(xp, z)
    loss = -xp.sum(y * logp) / z.shape[0]
    # d/dz of -sum_j y_j log p_j = (sum_j y_j) p - y; sum_j y_j = 1 for one-hot/probability rows.
    out[...] = (xp.sum(y, axis=1, keepdims=True) * xp.exp(logp) - y) / z.shape[0]
    return loss


def _bce_value(xp: Any, z: Any, y: Any) -> Any:
    # max(z, 0) - z*y + log(1 + exp(-|z|)), PyTorch's BCEWithLogitsLoss.
    return xp.sum(xp.maximum(z, 0.0) - z * y + xp.log1p(xp.exp(-xp.abs(z)))) / _size(z)


def _bce_value_and_grad(xp: Any, ops: Any, z: Any, y: Any, out: Any) -> Any:
    loss = _bce_value(xp, z, y)
    out[...] = (sigmoid(xp, z) - y) / _size(z)
    return loss


#: Registry of loss names accepted by ``loss=``.
LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("mse", _mse_value, _mse_value_and_grad),
        Loss("cross_entropy", _ce_value, _ce_value_and_grad),
        Loss("bce", _bce_value, _bce_value_and_grad),
    )
}

#: Losses whose targets are classes (accuracy is reported, labels are validated).
CLASSIFICATION_LOSSES = frozenset({"cross_entropy", "bce"})
