"""Activation functions applied in place, and their derivatives written from the activation's OUTPUT.

Each activation is a pair of functions over a preallocated batch buffer:

``forward(xp, ops, s) -> z``
    overwrite the pre-activation ``s`` (shape ``(batch, width)``) with ``f(s)`` and return it;
``backward(xp, ops, delta, z) -> delta``
    overwrite ``delta = dL/dz`` with ``dL/ds = delta * f'(s)``, computed from ``z = f(s)``
    (exact for all five: ``sigmoid' = z(1-z)``, ``tanh' = 1-z^2``, relu/leaky relu from ``sign(z)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flatnet_xp._shim import stable_sigmoid

__all__ = ["ACTIVATIONS", "LEAKY_SLOPE", "Activation", "sigmoid"]

#: Negative-side slope of ``leaky_relu`` (PyTorch's default).
LEAKY_SLOPE = 0.01


@dataclass(frozen=True)
class Activation:
    """An activation: its name and the in-place forward/backward pair described in the module doc."""

    name: str
    forward: Callable[[Any, Any, Any], Any]
    backward: Callable[[Any, Any, Any, Any], Any]


def sigmoid(xp: Any, s: Any) -> Any:
    """Overflow-free logistic function returning a new array (see :func:`flatnet_xp._shim.stable_sigmoid`).

    The in-place activation uses the shim's ``ops.sigmoid`` instead: this same formula on
    array-api-strict, a fused stable kernel on NumPy, CuPy and PyTorch.
    """
    return stable_sigmoid(xp, s)


def _sigmoid_fwd(xp: Any, ops: Any, s: Any) -> Any:
    return ops.sigmoid(s, out=s)


def _sigmoid_bwd(xp: Any, ops: Any, delta: Any, z: Any) -> Any:
    delta *= z - z * z
    return delta


def _tanh_fwd(xp: Any, ops: Any, s: Any) -> Any:
    return ops.tanh(s, out=s)


def _tanh_bwd(xp: Any, ops: Any, delta: Any, z: Any) -> Any:
    delta *= 1.0 - z * z
    return delta


def _relu_fwd(xp: Any, ops: Any, s: Any) -> Any:
    return ops.maximum(s, 0.0, out=s)


def _relu_bwd(xp: Any, ops: Any, delta: Any, z: Any) -> Any:
    return ops.mask_mul(delta, z > 0, out=delta)


def _leaky_fwd(xp: Any, ops: Any, s: Any) -> Any:
    # max(s, a*s) is leaky ReLU for 0 < a < 1.
    return ops.maximum(s, LEAKY_SLOPE * s, out=s)


def _leaky_bwd(xp: Any, ops: Any, delta: Any, z: Any) -> Any:
    delta[...] = xp.where(z > 0, delta, LEAKY_SLOPE * delta)
    return delta


def _identity_fwd(xp: Any, ops: Any, s: Any) -> Any:
    return s


def _identity_bwd(xp: Any, ops: Any, delta: Any, z: Any) -> Any:
    return delta


#: Registry of activation names accepted by ``FlatMLP(activations=...)``.
ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("sigmoid", _sigmoid_fwd, _sigmoid_bwd),
        Activation("tanh", _tanh_fwd, _tanh_bwd),
        Activation("relu", _relu_fwd, _relu_bwd),
        Activation("leaky_relu", _leaky_fwd, _leaky_bwd),
        Activation("identity", _identity_fwd, _identity_bwd),
    )
}
