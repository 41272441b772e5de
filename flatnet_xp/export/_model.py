"""A whole network (and its stored preprocessing) as one ``onnx.ModelProto``.

Graph inputs (a dynamic batch axis ``batch``):

``X`` : float (batch, L_1)
    The network's inputs; with a stored preprocessing of numeric columns (version 1), the RAW
    feature columns in ``feature_names`` order (standardized inside the graph).
one input per raw column, ``(batch, 1)``, for a table model (``flatnet-xp train`` on a CSV)
    named after the column (``column:NAME`` where that name is an output's); float for numeric
    columns and integer categories (NaN where missing), string for text categories (see
    :mod:`flatnet_xp.export._columns`; the mapping is in the metadata as ``input_columns``).

Outputs, always:

``output`` : float (batch, L_n)
    What :meth:`FlatMLP.predict` returns (raw last-layer outputs: logits for an identity layer).

and by the network's loss (``net.loss_``):

``probabilities`` : float (batch, L_n)
    cross_entropy, bce: :meth:`FlatMLP.predict_proba` (softmax, or sigmoid for one output).
``label`` : int64 (batch,)
    cross_entropy, bce: :meth:`FlatMLP.predict_class` (argmax, or ``output > 0`` for one output).
``rate`` : float (batch, L_n)
    poisson: ``exp(output)``, the predicted mean count.

and by the stored preprocessing (models of ``flatnet-xp train``), as ``flatnet-xp predict`` writes:

``prediction`` : float (batch, L_n)
    regression: the outputs in the target's units (unscaled).
``label`` : string (batch,)  and  ``probabilities`` : float (batch, n_classes)
    classification: class names, and one probability per class (two columns for one logistic output).

Feature, target and class names are stored in the model's ``metadata_props``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from flatnet_xp.export._builder import OnnxGraph
from flatnet_xp.export._columns import TEXT_OPSET, add_columns, column_inputs, needs_text_opset
from flatnet_xp.export._graph import add_head, add_layers
from flatnet_xp.export._preprocessing import add_input_steps, add_output_steps, steps_of
from flatnet_xp.layout import Layout
from flatnet_xp.preprocessing.steps import ColumnSteps

__all__ = ["OUTPUT_NAMES", "build_model", "host_layers"]

#: Every name a graph output can have (see the module doc).
OUTPUT_NAMES = ("output", "probabilities", "label", "rate", "prediction")


def host_layers(layout: Layout, params: np.ndarray, dtype: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Layer matrices ``(L_{k+1}, L_k)`` and biases of the flat host buffer ``[w, b]``, in ``dtype``.

    Raises
    ------
    ValueError
        Parameters that overflow ``dtype`` (float64 values beyond float32's range).
    """
    flat = np.asarray(params)
    with np.errstate(over="ignore"):
        cast = flat.astype(dtype)
    if not np.all(np.isfinite(cast)):
        raise ValueError(f"dtype: the network's parameters are not all finite in {dtype}; export as float64")
    w, b = cast[: layout.w_len], cast[layout.w_len :]
    weights = [w[layout.w_slice(k)].reshape(shape) for k, shape in enumerate(layout.shapes)]
    biases = [b[layout.b_slice(k)] for k in range(layout.n_layers)]
    return weights, biases


def build_model(
    layout: Layout,
    activations: Sequence[str],
    params: np.ndarray,
    *,
    dtype: str,
    opset: int,
    loss: str | None,
    preprocessing: dict[str, Any] | None,
) -> Any:
    """The ``onnx.ModelProto`` of a network (see the module doc for its inputs and outputs).

    Parameters
    ----------
    layout, activations
        The network's layout and one activation name per layer.
    params : ndarray, shape (n_params,)
        The flat host buffer ``[w, b]`` (finite).
    dtype : {"float32", "float64"}
        Element type of the graph's input, weights and float outputs.
    opset : int
        Opset of the default ONNX domain.
    loss : str or None
        Name of the network's loss: decides the extra outputs (none for None or an unknown name).
    preprocessing : dict or None
        :meth:`Preprocessing.to_dict` of a stored preprocessing to export with the network.

    Raises
    ------
    ValueError
        Parameters that overflow ``dtype``; a stored preprocessing step with no ONNX form (named).
    """
    n_out = layout.sizes[-1]
    steps_in, steps_out = steps_of(preprocessing, n_out) if preprocessing is not None else ([], [])
    weights, biases = host_layers(layout, params, dtype)
    stored = None if preprocessing is None else preprocessing.get("columns")
    columns = None if stored is None else ColumnSteps.from_dict(stored)  # validated once
    if columns is not None:  # a table model: one input per raw column
        if opset < TEXT_OPSET and needs_text_opset(columns):
            raise ValueError(
                f"opset: a model with text columns needs opset >= {TEXT_OPSET} (string comparisons), got {opset}"
            )
        inputs = column_inputs(columns, dtype, OUTPUT_NAMES)
        g = OnnxGraph(dtype, opset, reserved=(*(i[0] for i in inputs), *OUTPUT_NAMES))
        x = add_columns(g, columns, inputs)
    else:
        inputs = [("X", dtype, ["batch", layout.sizes[0]])]
        g = OnnxGraph(dtype, opset, reserved=("X", *OUTPUT_NAMES))
        x = "X"
    z = add_layers(g, add_input_steps(g, x, steps_in), weights, biases, activations)
    outs = add_output_steps(g, {"output": z, **add_head(g, z, n_out, loss)}, steps_out)
    graph_outputs = []
    for name, value in outs.items():
        g.rename(value, name)
        graph_outputs.append((name, *_output_type(name, dtype, n_out, preprocessing)))
    meta = {} if preprocessing is None else {
        "feature_names": json.dumps(preprocessing.get("feature_names")),
        "target_name": json.dumps(preprocessing.get("target_name")),
        "class_names": json.dumps(preprocessing.get("class_names")),
    }  # fmt: skip
    if columns is not None:  # input name -> raw column it takes
        meta["input_columns"] = json.dumps({i[0]: s.column for i, s in zip(inputs, columns.steps, strict=True)})
    doc = f"flatnet_xp MLP {list(layout.sizes)}, activations {list(activations)}, loss {loss}"
    return g.model(inputs, graph_outputs, doc, meta)


def _output_type(name: str, dtype: str, n_out: int, preprocessing: dict[str, Any] | None) -> tuple[str, list[Any]]:
    if name == "label":
        classes = preprocessing is not None and preprocessing.get("class_names") is not None
        return ("string" if classes else "int64"), ["batch"]
    if name == "probabilities" and preprocessing is not None and preprocessing.get("class_names") is not None:
        return dtype, ["batch", len(preprocessing["class_names"])]
    return dtype, ["batch", n_out]
