"""The network as ONNX nodes: one Gemm per layer, its activation, and the output head of its loss.

The flat layout stores layer ``k``'s matrix row-major ``(out, in)`` (``torch.nn.Linear.weight``'s
layout), so ``Gemm(a, W_k, b_k, transB=1)`` computes ``a @ W_k.T + b_k`` from the layer views as
they are: no transposed copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from flatnet_xp.activations import ACTIVATIONS, LEAKY_SLOPE
from flatnet_xp.export._builder import GraphBuilder

__all__ = ["ACTIVATION_NODES", "HEADS", "add_activation", "add_head", "add_layers"]


def _sigmoid(g: GraphBuilder, x: str, hint: str) -> str:
    return g.node("Sigmoid", [x], hint)


def _tanh(g: GraphBuilder, x: str, hint: str) -> str:
    return g.node("Tanh", [x], hint)


def _relu(g: GraphBuilder, x: str, hint: str) -> str:
    return g.node("Relu", [x], hint)


def _leaky_relu(g: GraphBuilder, x: str, hint: str) -> str:
    # max(s, a*s), the library's own formula: LeakyRelu's alpha is a float32 attribute (0.01 rounded to
    # float32 differs by 2e-8 relative), which float64 models must not inherit.
    slope = g.constant("leaky_slope", np.asarray(LEAKY_SLOPE, dtype=g.dtype))
    return g.node("Max", [x, g.node("Mul", [x, slope], f"{hint}_scaled")], hint)


def _identity(g: GraphBuilder, x: str, hint: str) -> str:
    return x


#: One ONNX subgraph per activation of :data:`flatnet_xp.activations.ACTIVATIONS`.
ACTIVATION_NODES: dict[str, Callable[[GraphBuilder, str, str], str]] = {
    "sigmoid": _sigmoid,
    "tanh": _tanh,
    "relu": _relu,
    "leaky_relu": _leaky_relu,
    "identity": _identity,
}
assert set(ACTIVATION_NODES) == set(ACTIVATIONS), "every activation needs its ONNX form"


def add_activation(g: GraphBuilder, name: str, x: str, hint: str) -> str:
    """The activation ``name`` applied to ``x``."""
    if name not in ACTIVATION_NODES:
        raise ValueError(f"activations: {name!r} has no ONNX form (exportable: {sorted(ACTIVATION_NODES)})")
    return ACTIVATION_NODES[name](g, x, hint)


def add_layers(
    g: GraphBuilder, x: str, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], activations: Sequence[str]
) -> str:
    """The network's forward pass from ``x`` (shape ``(batch, L_1)``): ``Gemm`` + activation per layer.

    Parameters
    ----------
    weights : sequence of arrays, shapes (L_{k+1}, L_k)
        Layer matrices as the flat buffer lays them out (row-major ``(out, in)``), in ``g.dtype``.
    biases : sequence of arrays, shapes (L_{k+1},)
    activations : sequence of str, one per layer

    Returns
    -------
    str
        Name of the last layer's activations, shape ``(batch, L_n)``.
    """
    a = x
    for k, (W, b, act) in enumerate(zip(weights, biases, activations, strict=True)):
        s = g.node("Gemm", [a, g.constant(f"W{k}", W), g.constant(f"b{k}", b)], f"s{k}", transB=1)
        a = add_activation(g, act, s, f"a{k}")
    return a


def _predict_class(g: GraphBuilder, z: str, n_out: int) -> str:
    """``FlatMLP.predict_class``: argmax of the outputs, or ``output > 0`` for one output; int64 (batch,)."""
    if n_out > 1:
        return g.node("ArgMax", [z], "label", axis=1, keepdims=0)
    zero = g.constant("zero", np.zeros((), dtype=g.dtype))
    flat = g.node("Squeeze", [z, g.constant("axis1", np.asarray([1], dtype=np.int64))], "logit")
    return g.node("Cast", [g.node("Greater", [flat, zero], "positive")], "label", to=7)


def _classifier_head(g: GraphBuilder, z: str, n_out: int) -> dict[str, str]:
    # FlatMLP.predict_proba: sigmoid for one output, softmax otherwise (whatever the loss).
    proba = g.node("Sigmoid", [z], "probabilities") if n_out == 1 else g.node("Softmax", [z], "probabilities", axis=-1)
    return {"probabilities": proba, "label": _predict_class(g, z, n_out)}


def _poisson_head(g: GraphBuilder, z: str, n_out: int) -> dict[str, str]:
    return {"rate": g.node("Exp", [z], "rate")}


def _no_head(g: GraphBuilder, z: str, n_out: int) -> dict[str, str]:
    return {}


#: What each loss adds to the raw ``output``: the classification losses ``probabilities``
#: (``predict_proba``) and ``label`` (``predict_class``), poisson the ``rate`` ``exp(output)``.
HEADS: dict[str, Callable[[GraphBuilder, str, int], dict[str, str]]] = {
    "mse": _no_head,
    "cross_entropy": _classifier_head,
    "bce": _classifier_head,
    "poisson": _poisson_head,
}


def add_head(g: GraphBuilder, z: str, n_out: int, loss: str | None) -> dict[str, str]:
    """The outputs a loss adds to the raw outputs ``z`` (none without a loss or for a custom loss)."""
    if loss is None or loss not in HEADS:
        return {}
    return HEADS[loss](g, z, n_out)
