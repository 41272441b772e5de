"""A model file's stored preprocessing as ONNX nodes: one exporter per kind of step, in two tables.

A :class:`~flatnet_xp.preprocessing.Preprocessing` (its :meth:`to_dict` form) is read as a list of
steps ``(kind, parameters)``: steps on the raw input columns (:data:`INPUT_STEPS`, e.g.
``standardize``: ``(x - means) / scales``) and steps on the network's outputs (:data:`OUTPUT_STEPS`:
``unscale_target`` back into the target's units, ``decode_classes`` from indices to class names).
A kind that is not in the tables is refused by name (:func:`steps_of`), so a new kind of
preprocessing is exported by adding one function to a table and one line to :func:`steps_of`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from flatnet_xp.export._builder import GraphBuilder

__all__ = ["INPUT_STEPS", "OUTPUT_STEPS", "Step", "add_input_steps", "add_output_steps", "steps_of"]


@dataclass(frozen=True)
class Step:
    """One preprocessing step: its kind (a key of :data:`INPUT_STEPS` or :data:`OUTPUT_STEPS`) and parameters."""

    kind: str
    params: Mapping[str, Any]


# ---------------------------------------------------------------------------------------- input side
def _standardize(g: GraphBuilder, x: str, p: Mapping[str, Any]) -> str:
    means = g.constant("means", np.asarray(p["means"], dtype=g.dtype))
    scales = g.constant("scales", np.asarray(p["scales"], dtype=g.dtype))
    return g.node("Div", [g.node("Sub", [x, means], "centered"), scales], "standardized")


#: Steps on the raw inputs ``(batch, n_features)``: ``f(builder, x, params) -> new x``.
INPUT_STEPS: dict[str, Callable[[GraphBuilder, str, Mapping[str, Any]], str]] = {"standardize": _standardize}


# ---------------------------------------------------------------------------------------- output side
def _unscale_target(g: GraphBuilder, outs: dict[str, str], p: Mapping[str, Any]) -> dict[str, str]:
    value = outs["output"]
    if p["mean"] is not None:
        scale = g.constant("target_scale", np.asarray(p["scale"], dtype=g.dtype))
        mean = g.constant("target_mean", np.asarray(p["mean"], dtype=g.dtype))
        value = g.node("Add", [g.node("Mul", [value, scale], "scaled_prediction"), mean], "prediction")
    return {**outs, "prediction": value}


def _decode_classes(g: GraphBuilder, outs: dict[str, str], p: Mapping[str, Any]) -> dict[str, str]:
    if "label" not in outs:
        raise ValueError("preprocessing: class names stored, but the network has no classification loss to decode")
    names = g.constant("class_names", np.asarray(p["class_names"], dtype=object))
    label = g.node("Gather", [names, outs["label"]], "class_label", axis=0)
    proba = outs["probabilities"]
    if len(p["class_names"]) == 2 and p["n_outputs"] == 1:  # one logistic output: P(second class)
        one = g.constant("one", np.ones((1, 1), dtype=g.dtype))
        proba = g.node("Concat", [g.node("Sub", [one, proba], "first_class"), proba], "class_probabilities", axis=1)
    return {**outs, "label": label, "probabilities": proba}


#: Steps on the outputs: ``f(builder, outputs by name, params) -> outputs by name``.
OUTPUT_STEPS: dict[str, Callable[[GraphBuilder, dict[str, str], Mapping[str, Any]], dict[str, str]]] = {
    "unscale_target": _unscale_target,
    "decode_classes": _decode_classes,
}

#: Keys of the stored preprocessing that describe rather than transform (no graph nodes).
_DESCRIPTIVE = frozenset({"version", "feature_names", "target_name", "task"})
#: Keys read into steps by :func:`steps_of`.
_READ = frozenset({"means", "scales", "target_mean", "target_scale", "class_names", "columns"})


def steps_of(prep: Mapping[str, Any], n_outputs: int) -> tuple[list[Step], list[Step]]:
    """The input and output steps of a stored preprocessing (:meth:`Preprocessing.to_dict`).

    Raises
    ------
    ValueError
        A stored step this exporter cannot write as ONNX, named (e.g. a kind added to the
        preprocessing after this exporter was written).
    """
    unknown = sorted(k for k, v in prep.items() if k not in _DESCRIPTIVE | _READ and v not in (None, [], {}))
    if unknown:
        raise ValueError(
            f"preprocessing: cannot export step{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"to ONNX (exportable: {', '.join(sorted(INPUT_STEPS) + sorted(OUTPUT_STEPS))})"
        )
    inputs = []
    if prep.get("means") is not None:
        inputs.append(Step("standardize", {"means": prep["means"], "scales": prep["scales"]}))
    outputs = []
    if prep.get("task") == "regress":
        outputs.append(Step("unscale_target", {"mean": prep.get("target_mean"), "scale": prep.get("target_scale")}))
    elif prep.get("class_names") is not None:
        outputs.append(Step("decode_classes", {"class_names": prep["class_names"], "n_outputs": n_outputs}))
    return inputs, outputs


def add_input_steps(g: GraphBuilder, x: str, steps: list[Step]) -> str:
    """The raw inputs ``x`` after every input step."""
    for step in steps:
        x = INPUT_STEPS[step.kind](g, x, step.params)
    return x


def add_output_steps(g: GraphBuilder, outs: dict[str, str], steps: list[Step]) -> dict[str, str]:
    """The outputs after every output step."""
    for step in steps:
        outs = OUTPUT_STEPS[step.kind](g, outs, step.params)
    return outs
