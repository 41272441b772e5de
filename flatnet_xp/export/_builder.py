"""The small graph-building interface the exporters write to, and its standalone ONNX implementation.

Every exporter (the network's layers, its output head, each preprocessing step) is a function of a
:class:`GraphBuilder` and the names of its input values, returning the names of the values it made.
:class:`OnnxGraph` collects the nodes into an ``onnx.ModelProto``; the scikit-learn converter
(:mod:`flatnet_xp.sklearn._onnx`) implements the same interface on skl2onnx's scope and container,
so one exporter serves both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np

__all__ = ["ELEM_TYPES", "GraphBuilder", "OnnxGraph"]

#: ONNX element type codes (``onnx.TensorProto``) of the dtypes we write.
ELEM_TYPES = {"float32": 1, "float64": 11, "int64": 7, "bool": 9, "string": 8}


class GraphBuilder(Protocol):
    """Where exporters add constants and nodes (names are made unique by the builder)."""

    #: ``"float32"`` or ``"float64"``: the floating-point type of every value of the graph.
    dtype: str

    def constant(self, hint: str, value: np.ndarray) -> str:
        """Add ``value`` as an initializer; return its (unique) name."""
        ...

    def node(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        """Add one node of the default domain with one output; return the output's (unique) name."""
        ...


class OnnxGraph:
    """A :class:`GraphBuilder` that makes a standalone ``onnx.ModelProto``.

    Parameters
    ----------
    dtype : {"float32", "float64"}
    opset : int
        Opset of the default ONNX domain.
    reserved : iterable of str
        Names kept for the graph's inputs and outputs (:meth:`unique` never hands them out;
        :meth:`rename` gives them to values).
    """

    def __init__(self, dtype: str, opset: int, reserved: Iterable[str] = ()) -> None:
        self.dtype = dtype
        self.opset = opset
        self._nodes: list[Any] = []
        self._initializers: list[Any] = []
        self._used: set[str] = set(reserved)

    def unique(self, hint: str) -> str:
        """``hint``, or ``hint_2``, ``hint_3``, ... when taken."""
        name, k = hint, 1
        while name in self._used:
            k += 1
            name = f"{hint}_{k}"
        self._used.add(name)
        return name

    def constant(self, hint: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.unique(hint)
        array = np.asarray(value)
        if array.dtype.kind in "USO":
            from onnx import helper

            values = [str(s).encode() for s in array.ravel()]
            tensor = helper.make_tensor(name, ELEM_TYPES["string"], array.shape, values)  # type: ignore[arg-type]
        else:
            tensor = numpy_helper.from_array(np.ascontiguousarray(array), name)
        self._initializers.append(tensor)
        return name

    def node(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        from onnx import helper

        out = self.unique(hint)
        self._nodes.append(helper.make_node(op, inputs, [out], name=self.unique(f"{op}_{hint}"), **attrs))
        return out

    def rename(self, value: str, name: str) -> str:
        """Give ``value`` the exact (reserved) name ``name`` of a graph output with an Identity node."""
        from onnx import helper

        self._nodes.append(helper.make_node("Identity", [value], [name], name=self.unique(f"Identity_{name}")))
        return name

    def model(
        self,
        inputs: list[tuple[str, str, list[Any]]],
        outputs: list[tuple[str, str, list[Any]]],
        doc: str,
        metadata: dict[str, str] | None = None,
    ) -> Any:
        """The ``onnx.ModelProto``; ``inputs``/``outputs`` are ``(name, element dtype, shape)`` with
        ``str`` entries of a shape naming dynamic axes. The model is checked with ``onnx.checker``."""
        import onnx
        from onnx import helper

        def info(name: str, dtype: str, shape: list[Any]) -> Any:
            return helper.make_tensor_value_info(name, ELEM_TYPES[dtype], shape)

        graph = helper.make_graph(
            self._nodes,
            "flatnet_xp",
            [info(*i) for i in inputs],
            [info(*o) for o in outputs],
            self._initializers,
            doc_string=doc,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="flatnet_xp", doc_string=doc
        )
        helper.set_model_props(model, metadata or {})
        model.ir_version = min(model.ir_version, _IR_OF_OPSET.get(self.opset, model.ir_version))
        onnx.checker.check_model(model, full_check=True)
        return model


# IR versions of the ONNX releases that introduced each opset: a model stamped with the newest IR
# of the installed onnx would be refused by an older runtime that supports its opset.
_IR_OF_OPSET = {14: 7, 15: 8, 16: 8, 17: 8, 18: 8, 19: 9, 20: 9, 21: 10, 22: 10}
