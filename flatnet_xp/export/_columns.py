"""The column steps of a table model (``flatnet-xp train`` on a CSV) as ONNX nodes.

A model trained on a table reads raw columns (:class:`~flatnet_xp.preprocessing.steps.ColumnSteps`):
its ONNX graph takes ONE INPUT PER RAW COLUMN, shape ``(batch, 1)``, named after the column, and
replays each step as :meth:`Step.transform` does:

``numeric`` column: float input (NaN where a value is missing)
    the value, NaN replaced by the training median; with an indicator, ``IsNaN`` as a 0/1 feature.
``onehot`` column of integer levels: float input (NaN where missing)
    the value itself (missing: its stored fill), then one 0/1 feature per level (``Equal``), and
    one for the rare levels together; missing cells take the most frequent level.
``onehot`` column of text: string input (cells stripped of surrounding whitespace, as
    ``flatnet-xp predict`` reads them)
    one 0/1 feature per level (string ``Equal``, opset >= 19), one for the rare levels together;
    a cell that is a missing marker (``""``, ``NA``, ``null``... in any case) takes the most
    frequent level; a level never seen in training gives zeros, as in Python.
``date`` column
    refused: parsing dates has no ONNX operator (train without the column to export).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from flatnet_xp.export._builder import GraphBuilder
from flatnet_xp.preprocessing.steps import MISSING_TEXT, ColumnSteps, Step

__all__ = ["TEXT_OPSET", "ColumnInput", "add_columns", "column_inputs", "needs_text_opset"]

#: Opset from which ``Equal`` compares strings (text columns need it).
TEXT_OPSET = 19

#: A graph input: (name, element dtype, shape).
ColumnInput = tuple[str, str, list[Any]]


def _is_text(step: Step) -> bool:
    return step.kind == "onehot" and step.params["number"] is None


def _levels_as_numbers(step: Step) -> np.ndarray:
    p = step.params
    try:
        return np.array([float(v) for v in [*p["levels"], *p["rare"]]], dtype=np.float64)
    except ValueError:
        raise ValueError(f"preprocessing: column {step.column!r} has integer and text levels; cannot export") from None


def needs_text_opset(columns: ColumnSteps) -> bool:
    """Whether a table model's columns include text (string comparisons: opset >= 19)."""
    return any(_is_text(s) for s in columns.steps)


def column_inputs(columns: ColumnSteps, dtype: str, reserved: Sequence[str]) -> list[ColumnInput]:
    """One graph input per raw column: its name (the column's, or ``column:NAME`` where that name
    is one of ``reserved``, the graph's output names), element type and shape ``(batch, 1)``.

    Raises
    ------
    ValueError
        A date column (named): dates cannot be parsed by ONNX operators.
    """
    steps = columns.steps
    dates = [s.column for s in steps if s.kind == "date"]
    if dates:
        raise ValueError(
            f"preprocessing: date column{'s' if len(dates) > 1 else ''} {', '.join(map(repr, dates))} cannot be "
            "exported to ONNX (no ONNX operator parses dates): train without "
            f"{'them' if len(dates) > 1 else 'it'} (--drop {','.join(dates)}) to export the model"
        )
    return [
        (f"column:{s.column}" if s.column in reserved else s.column, "string" if _is_text(s) else dtype, ["batch", 1])
        for s in steps
    ]


def add_columns(g: GraphBuilder, columns: ColumnSteps, inputs: Sequence[ColumnInput]) -> str:
    """The feature matrix ``(batch, n_features)`` the steps make from the raw column inputs."""
    blocks = [_step(g, step, name) for step, (name, _, _) in zip(columns.steps, inputs, strict=True)]
    features = [b for block in blocks for b in block]
    return features[0] if len(features) == 1 else g.node("Concat", features, "features", axis=1)


def _float(g: GraphBuilder, x: str, hint: str) -> str:
    return g.node("Cast", [x], hint, to=1 if g.dtype == "float32" else 11)


def _any(g: GraphBuilder, equal: str, hint: str) -> str:
    """``(batch, 1)`` 0/1 float: whether any column of the boolean ``equal`` ``(batch, k)`` is true."""
    hits = _float(g, equal, f"{hint}_hits")
    if getattr(g, "opset", 18) < 18:  # axes became an input in opset 18
        return g.node("ReduceMax", [hits], hint, axes=[1], keepdims=1)
    axes = g.constant(f"{hint}_axis", np.array([1], dtype=np.int64))
    return g.node("ReduceMax", [hits, axes], hint, keepdims=1)


def _step(g: GraphBuilder, step: Step, x: str) -> list[str]:
    """The step's outputs, each ``(batch, k)`` float, in :attr:`Step.output_names` order."""
    p, c = step.params, step.column
    out: list[str] = []
    if step.kind == "numeric":
        missing = g.node("IsNaN", [x], f"{c}_isnan")
        out.append(g.node("Where", [missing, g.constant(f"{c}_fill", np.array(p["fill"], dtype=g.dtype)), x], c))
    elif not _is_text(step):  # integer levels: compare numbers
        missing = g.node("IsNaN", [x], f"{c}_isnan")
        values = _levels_as_numbers(step)
        out.append(g.node("Where", [missing, g.constant(f"{c}_number", np.array(p["number"], dtype=g.dtype)), x], c))
        cell = x
        if p["fill"] is not None:  # missing cells are the most frequent level
            fill = g.constant(f"{c}_fill", np.array(float(p["fill"]), dtype=g.dtype))
            cell = g.node("Where", [missing, fill, x], f"{c}_filled")
        out += _onehot(g, c, cell, values.astype(g.dtype), len(p["levels"]))
    else:  # text levels: compare strings (missing markers recognised in any case)
        flat = g.node("Reshape", [x, g.constant(f"{c}_flat", np.array([-1], dtype=np.int64))], f"{c}_flat")
        # The "C" locale exists everywhere (the default en_US.UTF-8 need not); the markers are ASCII.
        lower = g.node("StringNormalizer", [flat], f"{c}_lower", case_change_action="LOWER", locale="C")
        lower = g.node("Reshape", [lower, g.constant(f"{c}_col", np.array([-1, 1], dtype=np.int64))], f"{c}_lower2")
        markers = g.constant(f"{c}_markers", np.array([sorted(MISSING_TEXT)], dtype=object))
        is_missing = _any(g, g.node("Equal", [lower, markers], f"{c}_marker_eq"), f"{c}_missing_f")
        missing = g.node("Cast", [is_missing], f"{c}_missing", to=9)
        levels = np.array([*p["levels"], *p["rare"]], dtype=object)
        cell = x
        if p["fill"] is not None:
            fill = g.constant(f"{c}_fill", np.array([[p["fill"]]], dtype=object))
            cell = g.node("Where", [missing, fill, x], f"{c}_filled")
        out += _onehot(g, c, cell, levels, len(p["levels"]))
    if p["indicator"]:
        out.append(_float(g, missing, f"{c}__missing"))
    return out


def _onehot(g: GraphBuilder, c: str, cell: str, levels: np.ndarray, n_kept: int) -> list[str]:
    """One 0/1 column per kept level, then one for the rare levels together (if any)."""
    out = []
    if n_kept:
        kept = g.constant(f"{c}_levels", levels[None, :n_kept])
        out.append(_float(g, g.node("Equal", [cell, kept], f"{c}_eq"), f"{c}_onehot"))
    if levels.shape[0] > n_kept:
        rare = g.constant(f"{c}_rare", levels[None, n_kept:])
        out.append(_any(g, g.node("Equal", [cell, rare], f"{c}_rare_eq"), f"{c}_rare"))
    return out
