"""skl2onnx converters for the estimators, so that pipelines holding them convert to ONNX.

After :func:`register_skl2onnx`, ``skl2onnx.to_onnx(pipeline, X)`` converts a pipeline with a
:class:`FlatMLPClassifier` or :class:`FlatMLPRegressor` step as it converts scikit-learn's MLPs.
The classifier gives ``label`` (``classes_`` values: int64 or string) and ``probabilities`` (a
ZipMap of them by default; ``options={id(clf): {"zipmap": False}}`` or ``"columns"``, and
``"nocl": True`` for class indices as labels, as for scikit-learn's classifiers); the regressor
gives ``variable`` of shape (N, n_outputs). The graph is the network's (:mod:`flatnet_xp.export`)
in the input's float type, with the estimator's output activation (softmax, logistic, exp or
identity). Registration is explicit (importing skl2onnx is costly): call it once before converting.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from flatnet_xp.export import add_layers, host_layers
from flatnet_xp.sklearn._classifier import FlatMLPClassifier
from flatnet_xp.sklearn._regressor import FlatMLPRegressor

__all__ = ["register_skl2onnx"]


class _SklGraph:
    """The :class:`flatnet_xp.export.GraphBuilder` interface on skl2onnx's scope and container."""

    def __init__(self, scope: Any, container: Any, dtype: str) -> None:
        self.scope, self.container, self.dtype = scope, container, dtype

    def constant(self, hint: str, value: np.ndarray) -> str:
        from onnx.helper import np_dtype_to_tensor_dtype

        name = self.scope.get_unique_variable_name(hint)
        array = np.asarray(value)
        if array.dtype.kind in "USO":
            self.container.add_initializer(name, 8, list(array.shape), [str(v) for v in array.ravel()])
        else:
            kind = np_dtype_to_tensor_dtype(array.dtype)
            self.container.add_initializer(name, kind, list(array.shape), array.ravel())
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.scope.get_unique_variable_name(hint)
        self.container.add_node(op, inputs, [out], name=self.scope.get_unique_operator_name(op), **attrs)
        return out


def _network(scope: Any, operator: Any, container: Any) -> tuple[_SklGraph, str]:
    """The estimator's network on the operator's input, with its output activation; returns the graph
    builder and the name of the outputs (batch, n_outputs)."""
    from skl2onnx.common.data_types import guess_numpy_type

    est = operator.raw_operator
    dtype = np.dtype(guess_numpy_type(operator.inputs[0].type)).name
    if dtype not in ("float32", "float64"):
        raise ValueError(f"X: expected a float32 or float64 input type, got {dtype}")
    g = _SklGraph(scope, container, dtype)
    net = est.net_
    weights, biases = host_layers(net.layout, np.concatenate(net.get_params()), dtype)
    z = add_layers(g, operator.inputs[0].full_name, weights, biases, net.activations)
    out = est.out_activation_
    if out == "softmax":
        z = g.node("Softmax", [z], "probabilities", axis=-1)
    elif out == "logistic":
        z = g.node("Sigmoid", [z], "probabilities")
    elif out == "exp":
        z = g.node("Exp", [z], "rate")
    return g, z


def _convert_classifier(scope: Any, operator: Any, container: Any) -> None:
    est = operator.raw_operator
    if est._label_binarizer.y_type_ == "multilabel-indicator":
        raise NotImplementedError("FlatMLPClassifier: multilabel models have no skl2onnx conversion")
    g, proba = _network(scope, operator, container)
    if est.out_activation_ == "logistic":  # one logistic output: P(second class)
        one = g.constant("one", np.ones((1, 1), dtype=g.dtype))
        proba = g.node("Concat", [g.node("Sub", [one, proba], "first_class"), proba], "probabilities", axis=1)
    label_out, proba_out = operator.outputs[0].full_name, operator.outputs[1].full_name
    container.add_node("Identity", [proba], [proba_out], name=scope.get_unique_operator_name("Identity"))
    index = g.node("ArgMax", [proba], "class_index", axis=1, keepdims=0)
    classes = np.asarray(est.classes_)
    if container.get_options(est, dict(nocl=False))["nocl"]:  # skl2onnx's option: class indices as labels
        values = np.arange(len(classes), dtype=np.int64)
    else:
        values = classes.astype(np.int64) if classes.dtype.kind in "iub" else classes.astype(str)
    container.add_node("Gather", [g.constant("classes", values), index], [label_out], axis=0,
                       name=scope.get_unique_operator_name("Gather"))  # fmt: skip


def _convert_regressor(scope: Any, operator: Any, container: Any) -> None:
    _, z = _network(scope, operator, container)
    out = operator.outputs[0].full_name
    container.add_node("Identity", [z], [out], name=scope.get_unique_operator_name("Identity"))


def _regressor_shape(operator: Any) -> None:
    """Output ``variable``: the input's float type, shape (N, n_outputs_)."""
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = operator.inputs[0].type.__class__([n, operator.raw_operator.n_outputs_])


def register_skl2onnx() -> None:
    """Register the shape calculators and converters of both estimators with skl2onnx (idempotent).

    Raises
    ------
    ImportError
        skl2onnx is not installed (``pip install 'flatnet_xp[skl2onnx]'``).
    """
    try:
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    except ImportError:
        raise ImportError("register_skl2onnx needs skl2onnx: pip install 'flatnet_xp[skl2onnx]'") from None
    update_registered_converter(
        FlatMLPClassifier,
        "FlatnetXpMLPClassifier",
        calculate_linear_classifier_output_shapes,
        _convert_classifier,
        options={"zipmap": [True, False, "columns"], "nocl": [False, True]},
    )
    update_registered_converter(FlatMLPRegressor, "FlatnetXpMLPRegressor", _regressor_shape, _convert_regressor)
