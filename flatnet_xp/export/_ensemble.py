"""A :class:`~flatnet_xp.FlatEnsemble` as one ONNX model: every member's layers, then their mean.

Graph: input ``X`` (batch, L_1); each member's ``Gemm`` + activation layers from its row of the
``(E, n_params)`` buffer; outputs

``output`` : float (batch, L_n)
    the members' mean output (:meth:`FlatEnsemble.predict`);
``std`` : float (batch, L_n)
    the members' population standard deviation (``predict(X, return_std=True)``);
``probabilities`` : float (batch, L_n) and ``label`` : int64 (batch,), for classification losses
    the members' mean probabilities (softmax, or sigmoid for one output: ``predict_proba``) and
    their argmax (or ``p > 0.5``: ``predict_class``);
``members`` : float (E, batch, L_n), with ``members=True``
    every member's outputs (``predict(X, members=True)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from flatnet_xp.export._builder import GraphBuilder, OnnxGraph
from flatnet_xp.export._graph import add_layers
from flatnet_xp.export._model import host_layers
from flatnet_xp.layout import Layout

__all__ = ["ensemble_model"]

_CLASSIFICATION = ("cross_entropy", "bce")


def _mean0(g: GraphBuilder, x: str, hint: str, opset: int) -> str:
    """Mean over axis 0 (the members), that axis dropped."""
    if opset < 18:  # axes became an input in opset 18
        return g.node("ReduceMean", [x], hint, axes=[0], keepdims=0)
    return g.node("ReduceMean", [x, g.constant(f"{hint}_axis", np.array([0], dtype=np.int64))], hint, keepdims=0)


def _stack(g: GraphBuilder, parts: list[str], hint: str) -> str:
    """``(E, batch, L)`` from E values ``(batch, L)``."""
    axis = g.constant(f"{hint}_axis", np.array([0], dtype=np.int64))
    rows = [g.node("Unsqueeze", [p, axis], f"{hint}_{i}") for i, p in enumerate(parts)]
    return rows[0] if len(rows) == 1 else g.node("Concat", rows, hint, axis=0)


def ensemble_model(
    layout: Layout,
    activations: Sequence[str],
    params: np.ndarray,
    *,
    dtype: str,
    opset: int,
    loss: str | None,
    members: bool,
) -> Any:
    """The ``onnx.ModelProto`` of an ensemble (see the module doc).

    Parameters
    ----------
    params : ndarray, shape (E, n_params)
        The members' flat host buffers ``[w, b]`` (finite).

    Raises
    ------
    ValueError
        Parameters that overflow ``dtype``.
    """
    n_out, e = layout.sizes[-1], int(params.shape[0])
    g = OnnxGraph(dtype, opset, reserved=("X", "output", "std", "probabilities", "label", "members"))
    z = []
    for i in range(e):
        weights, biases = host_layers(layout, params[i], dtype)
        z.append(add_layers(g, "X", weights, biases, activations))
    stacked = _stack(g, z, "member_outputs")
    mean = _mean0(g, stacked, "mean", opset)
    centered = g.node("Sub", [stacked, mean], "centered")
    std = g.node("Sqrt", [_mean0(g, g.node("Mul", [centered, centered], "squared"), "variance", opset)], "std")
    outs = {"output": mean, "std": std}
    if loss in _CLASSIFICATION:
        if n_out == 1:
            probs = [g.node("Sigmoid", [zi], f"p{i}") for i, zi in enumerate(z)]
        else:
            probs = [g.node("Softmax", [zi], f"p{i}", axis=-1) for i, zi in enumerate(z)]
        proba = _mean0(g, _stack(g, probs, "member_probabilities"), "probabilities", opset)
        if n_out > 1:
            label = g.node("ArgMax", [proba], "label", axis=1, keepdims=0)
        else:
            half = g.constant("half", np.array(0.5, dtype=dtype))
            flat = g.node("Squeeze", [proba, g.constant("axis1", np.array([1], dtype=np.int64))], "p_flat")
            label = g.node("Cast", [g.node("Greater", [flat, half], "above_half")], "label", to=7)
        outs.update(probabilities=proba, label=label)
    if members:
        outs["members"] = stacked
    graph_outputs = []
    for name, value in outs.items():
        g.rename(value, name)
        shape: list[Any] = ["batch"] if name == "label" else ["batch", n_out]
        graph_outputs.append((name, "int64" if name == "label" else dtype, [e, *shape] if name == "members" else shape))
    doc = f"flatnet_xp ensemble of {e} MLPs {list(layout.sizes)}, activations {list(activations)}, loss {loss}"
    return g.model([("X", dtype, ["batch", layout.sizes[0]])], graph_outputs, doc, {"n_models": str(e)})
