"""Loss functions (means as PyTorch computes them) with their gradients w.r.t. the network output.

Each loss works on a batch of outputs ``z`` and float targets ``y``, both ``(batch, L_out)``, and
optional sample weights ``sw`` of shape ``(batch, 1)``, normalised to mean 1 over the batch (so a
weighted loss is ``sum_i sw_i l_i / batch``: the weighted average of the per-sample losses, as
scikit-learn's ``np.average(..., weights=...)``):

``loss.value(xp, z, y, sw) -> loss``
    a 0-d array (kept on the device: no host synchronisation);
``loss.value_and_grad(xp, ops, z, y, out, sw) -> (loss, dL/dz)``
    the same and its gradient, written into ``out`` where the backend can (see :mod:`flatnet_xp.backends`).

Cross-entropy, binary cross-entropy and Poisson take the raw last-layer outputs (logits, log-rates)
and are computed stably (max-shifted log-sum-exp, ``log1p(exp(-|z|))``); their gradients are the
fused ``(softmax(z) - y) / batch``, ``(sigmoid(z) - y) / size`` and ``(exp(z) - y) / size``. Integer
class labels are turned into one-hot rows before they get here. :meth:`Loss.scaled` multiplies a loss
and its gradient by a constant (scikit-learn's losses are such multiples: see :mod:`flatnet_xp.sklearn`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from flatnet_xp.activations import sigmoid

__all__ = ["CLASSIFICATION_LOSSES", "LOSSES", "Loss", "get_loss", "log_softmax", "softmax"]


@dataclass(frozen=True)
class Loss:
    """A loss: its name, targets, and the value / value-and-gradient pair described in the module doc.

    Attributes
    ----------
    name : str
    targets : {"real", "classes", "binary", "counts"}
        What the targets may hold: any real numbers; class labels or one-hot/probability rows;
        values in ``[0, 1]``; non-negative values.
    scale : float
        Constant factor applied to the loss and its gradient (1 for the registered losses).
    """

    name: str
    targets: str
    _value: Callable[..., Any]
    _value_and_grad: Callable[..., Any]
    scale: float = 1.0

    def value(self, xp: Any, z: Any, y: Any, sw: Any = None) -> Any:
        """Loss of outputs ``z`` against targets ``y`` (0-d array)."""
        return self._value(xp, z, y, sw, self.scale)

    def value_and_grad(self, xp: Any, ops: Any, z: Any, y: Any, out: Any, sw: Any = None) -> tuple[Any, Any]:
        """Loss (0-d array) and ``dL/dz`` (written into ``out`` where the backend can)."""
        return self._value_and_grad(xp, ops, z, y, out, sw, self.scale)

    def scaled(self, factor: float) -> Loss:
        """The same loss multiplied by ``factor`` (value and gradient)."""
        return replace(self, scale=self.scale * float(factor))

    @property
    def classification(self) -> bool:
        """True for losses whose targets are classes (accuracy is reported, labels are validated)."""
        return self.targets in ("classes", "binary")


def _size(z: Any) -> int:
    return int(z.shape[0]) * int(z.shape[1])


def _weighted(terms: Any, sw: Any) -> Any:
    return terms if sw is None else terms * sw


def _mse_value(xp: Any, z: Any, y: Any, sw: Any, scale: float) -> Any:
    r = z - y
    return xp.sum(_weighted(r * r, sw)) * (scale / _size(z))


def _mse_value_and_grad(xp: Any, ops: Any, z: Any, y: Any, out: Any, sw: Any, scale: float) -> tuple[Any, Any]:
    r = ops.subtract(z, y, out)
    size = _size(z)
    if sw is None:
        loss = ops.total(r * r) * (scale / size) if scale != 1.0 else ops.total(r * r) / size
        return loss, ops.imul(r, 2.0 * scale / size)
    loss = ops.total(sw * r * r) * (scale / size)
    return loss, ops.imul(r, sw * (2.0 * scale / size))


def log_softmax(xp: Any, z: Any) -> Any:
    """Row-wise ``log(softmax(z))`` with the max-shift: no overflow for any logits."""
    shifted = z - xp.max(z, axis=1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def softmax(xp: Any, z: Any) -> Any:
    """Row-wise softmax of logits ``z`` (``(n, k)``), max-shifted."""
    e = xp.exp(z - xp.max(z, axis=1, keepdims=True))
    return e / xp.sum(e, axis=1, keepdims=True)


def _ce_value(xp: Any, z: Any, y: Any, sw: Any, scale: float) -> Any:
    return -xp.sum(_weighted(y * log_softmax(xp, z), sw)) * (scale / z.shape[0])


def _ce_value_and_grad(xp: Any, ops: Any, z: Any, y: Any, out: Any, sw: Any, scale: float) -> tuple[Any, Any]:
    logp = log_softmax(xp, z)
    factor = scale / z.shape[0]
    loss = -xp.sum(_weighted(y * logp, sw)) * factor
    # d/dz of -sum_j y_j log p_j = (sum_j y_j) p - y; sum_j y_j = 1 for one-hot/probability rows.
    grad = xp.sum(y, axis=1, keepdims=True) * xp.exp(logp) - y
    return loss, ops.copy(_weighted(grad, sw) * factor, out)


def _bce_terms(xp: Any, z: Any, y: Any) -> Any:
    # max(z, 0) - z*y + log(1 + exp(-|z|)), PyTorch's BCEWithLogitsLoss.
    return xp.maximum(z, 0.0) - z * y + xp.log1p(xp.exp(-xp.abs(z)))


def _bce_value(xp: Any, z: Any, y: Any, sw: Any, scale: float) -> Any:
    return xp.sum(_weighted(_bce_terms(xp, z, y), sw)) * (scale / _size(z))


def _bce_value_and_grad(xp: Any, ops: Any, z: Any, y: Any, out: Any, sw: Any, scale: float) -> tuple[Any, Any]:
    factor = scale / _size(z)
    loss = xp.sum(_weighted(_bce_terms(xp, z, y), sw)) * factor
    return loss, ops.copy(_weighted(sigmoid(xp, z) - y, sw) * factor, out)


def _poisson_terms(xp: Any, z: Any, y: Any) -> Any:
    # Half the Poisson deviance with log-rate z: exp(z) - y z + y log y - y (0 at a perfect fit;
    # y log y taken as 0 at y = 0). PyTorch's PoissonNLLLoss(log_input=True) drops the last two terms.
    positive = y > 0
    ylogy = xp.where(positive, y * xp.log(xp.where(positive, y, 1.0)), 0.0)
    return xp.exp(z) - y * z + ylogy - y


def _poisson_value(xp: Any, z: Any, y: Any, sw: Any, scale: float) -> Any:
    return xp.sum(_weighted(_poisson_terms(xp, z, y), sw)) * (scale / _size(z))


def _poisson_value_and_grad(xp: Any, ops: Any, z: Any, y: Any, out: Any, sw: Any, scale: float) -> tuple[Any, Any]:
    factor = scale / _size(z)
    loss = xp.sum(_weighted(_poisson_terms(xp, z, y), sw)) * factor
    return loss, ops.copy(_weighted(xp.exp(z) - y, sw) * factor, out)


#: Registry of loss names accepted by ``loss=``.
LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("mse", "real", _mse_value, _mse_value_and_grad),
        Loss("cross_entropy", "classes", _ce_value, _ce_value_and_grad),
        Loss("bce", "binary", _bce_value, _bce_value_and_grad),
        Loss("poisson", "counts", _poisson_value, _poisson_value_and_grad),
    )
}

#: Losses whose targets are classes (accuracy is reported, labels are validated).
CLASSIFICATION_LOSSES = frozenset(name for name, loss in LOSSES.items() if loss.classification)


def get_loss(loss: str | Loss) -> Loss:
    """The :class:`Loss` for a registered name (or the given Loss itself), with a clear error otherwise."""
    if isinstance(loss, Loss):
        return loss
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss: expected one of {sorted(LOSSES)} or a flatnet_xp Loss, got {loss!r}")
    return LOSSES[loss]
