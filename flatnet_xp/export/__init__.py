"""ONNX export: a network (and the preprocessing stored with it) as a standalone ONNX model.

``FlatMLP.to_onnx(path)`` and ``flatnet-xp export`` write the model; any ONNX runtime then serves
it without Python or flatnet_xp. The package is split by job: the graph-building interface
(``_builder``), the network's layers and loss head (``_graph``), the table of preprocessing steps
(``_preprocessing``), the whole model (``_model``: its inputs and outputs are documented there)
and the checked, atomic write (``_write``). The scikit-learn estimators' skl2onnx converters live
with the estimators (:func:`flatnet_xp.sklearn.register_skl2onnx`). onnx is imported only when a
model is built (``pip install 'flatnet_xp[onnx]'``).
"""

from flatnet_xp.export._builder import GraphBuilder, OnnxGraph
from flatnet_xp.export._graph import ACTIVATION_NODES, HEADS, add_head, add_layers
from flatnet_xp.export._model import OUTPUT_NAMES, host_layers
from flatnet_xp.export._preprocessing import INPUT_STEPS, OUTPUT_STEPS, Step, steps_of
from flatnet_xp.export._write import (
    DEFAULT_OPSET,
    MIN_OPSET,
    check_opset,
    onnx_model,
    require_onnx,
    write_ensemble_onnx,
    write_onnx,
)

__all__ = [
    "ACTIVATION_NODES",
    "DEFAULT_OPSET",
    "HEADS",
    "INPUT_STEPS",
    "MIN_OPSET",
    "OUTPUT_NAMES",
    "OUTPUT_STEPS",
    "GraphBuilder",
    "OnnxGraph",
    "Step",
    "add_head",
    "add_layers",
    "check_opset",
    "host_layers",
    "onnx_model",
    "require_onnx",
    "steps_of",
    "write_ensemble_onnx",
    "write_onnx",
]
