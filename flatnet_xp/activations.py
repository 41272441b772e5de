"""Activation functions and their derivatives written from the activation's OUTPUT.

Each activation is a pair of functions over a batch buffer, each RETURNING its result (written in
place on mutable backends, a new array on JAX: see :mod:`flatnet_xp.backends`):

``forward(xp, ops, s) -> z``
    ``f(s)`` of the pre-activation ``s`` (shape ``(batch, width)``), overwriting ``s`` where it can;
``backward(xp, ops, delta, z) -> delta``
    ``dL/ds = delta * f'(s)`` from ``delta = dL/dz`` and ``z = f(s)``, overwriting ``delta`` where it
    can (exact for all five: ``sigmoid' = z(1-z)``, ``tanh' = 1-z^2``, relu/leaky relu from ``sign(z)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flatnet_xp.backends import stable_sigmoid

__all__ = ["ACTIVATIONS", "LEAKY_SLOPE", "Activation", "sigmoid"]

#: Negative-side slope of ``leaky_relu`` (PyTorch's default).
LEAKY_SLOPE = 0.01


@dataclass(frozen=True)
class Activation:
    """An activation: its name and the forward/backward pair described in the module doc."""

    name: str
    forward: Callable[[Any, Any, Any], Any]
    backward: Callable[[Any, Any, Any, Any], Any]


def sigmoid(xp: Any, s: Any) -> Any:
    """Overflow-free logistic function returning a new array (see :func:`flatnet_xp.backends.stable_sigmoid`).

    The activation itself uses the shim's ``ops.sigmoid``: this same formula on array-api-strict,
    a fused stable kernel on NumPy, CuPy, PyTorch and JAX.
    """
    return stable_sigmoid(xp, s)


def _sigmoid_fwd(xp: Any, ops: Any, s: Any) -> Any:
    return ops.sigmoid(s, s)


def _sigmoid_bwd(xp: Any, ops: Any, delta: Any, z: Any) -> Any:
    return ops.imul(delta, z - z * z)


def _tanh_fwd(xp: Any, ops: Any, s: Any) -> Any:
    return ops.tanh(s, s)


def _tanh_bwd(xp: Any, ops: Any, delta: Any, z: Any) -> Any:
    return ops.imul(delta, 1.0 - z * z)


def _relu_fwd(xp: Any, ops: Any, s: Any) -> Any:
    return ops.maximum(s, 0.0, s)


def _relu_bwd(xp: Any, ops: Any, delta: Any, z: Any) -> Any:
    return ops.mask_mul(delta, z > 0, delta)


def _leaky_fwd(xp: Any, ops: Any, s: Any) -> Any:
    # max(s, a*s) is leaky ReLU for 0 < a < 1.
    return ops.maximum(s, LEAKY_SLOPE * s, s)


def _leaky_bwd(xp: Any, ops: Any, delta: Any, z: Any) -> Any:
    return ops.copy(xp.where(z > 0, delta, LEAKY_SLOPE * delta), delta)


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
