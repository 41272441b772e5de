"""Column steps: small declarative records (kind + parameters) that turn raw table columns into numbers.

A model trained on a table stores a :class:`ColumnSteps` (as JSON inside its safetensors file):
which raw columns it reads, and for each one a :class:`Step`. Replaying the steps on new raw rows
gives exactly the feature matrix the network was trained on. Nothing is executed at load; every
record is validated. Each kind maps to a handful of ONNX ops:

``numeric``  ``{"fill": float, "indicator": bool}``
    the value as a float; a missing (or non-numeric) cell becomes ``fill`` (the training median)
    and, with ``indicator``, a second output ``<column>__missing`` is 1 there.
``onehot``   ``{"levels": [str], "rare": [str], "fill": str | None, "indicator": bool, "number": float | None}``
    one output ``<column>=<level>`` per level; cells in ``rare`` (levels seen fewer times in
    training) share one output ``<column>=(rare)``; a level never seen in training gives all
    zeros (never an error); a missing cell takes ``fill`` (the most frequent level) and, with
    ``indicator``, sets ``<column>__missing``. With ``number`` (integer levels) the cell's value is
    also an output ``<column>`` (missing: ``number``).
``date``     ``{"format": str | None, "fill": [float, float, float, float], "indicator": bool}``
    four outputs: days since 1970-01-01, year, month and weekday (Monday 0) of the parsed
    date (``format`` as in ``strftime``; None: any format pandas recognises); missing or
    unparsable: ``fill`` (the training medians).

Cells are compared as text: integral numbers are written without a decimal part (``3.0`` -> ``"3"``),
so a level read as an integer in training and as a float at prediction (a column with a missing
cell) is still the same level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["KINDS", "MISSING_TEXT", "ColumnSteps", "Step", "cell_text", "is_missing", "parse_dates", "to_floats"]

#: Kinds of step a model file may hold.
KINDS = ("numeric", "onehot", "date")
#: Text cells read as missing values (compared in lower case, after stripping whitespace).
MISSING_TEXT = frozenset({"", "na", "n/a", "nan", "null", "none", "?", "-", "--", ".", "missing"})
_DATE_PARTS = ("days", "year", "month", "weekday")
_MAX_TEXT = 1024


def is_missing(value: Any) -> bool:
    """True for None, NaN, pandas' NA/NaT and the text markers of :data:`MISSING_TEXT`."""
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(math.isnan(value))
    if isinstance(value, str):
        return value.strip().lower() in MISSING_TEXT
    try:
        return bool(value != value)  # pandas NA / NaT
    except (TypeError, ValueError):
        return False


def cell_text(value: Any) -> str:
    """The text a cell is compared as: integral numbers without a decimal part, text stripped."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        return str(int(f)) if f.is_integer() and abs(f) < 2**53 else repr(f)
    return str(value).strip()


def _float_or_nan(value: Any) -> float:
    if is_missing(value):
        return math.nan
    if isinstance(value, bool | np.bool_):
        return float(value)
    try:
        f = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def to_floats(values: Any) -> np.ndarray:
    """float64 array of the cells, NaN where a cell is missing, not a number or infinite."""
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        out = arr.astype(np.float64)
        out[~np.isfinite(out)] = np.nan
        return out
    return np.fromiter((_float_or_nan(v) for v in arr.tolist()), dtype=np.float64, count=arr.shape[0])


def parse_dates(values: Any, fmt: str | None) -> np.ndarray:
    """The four date parts (days since 1970-01-01, year, month, weekday) of each cell, NaN where
    a cell is missing or not a date in ``fmt``; shape (n, 4). Needs pandas."""
    import pandas as pd

    texts = ["" if is_missing(v) else str(v).strip() for v in np.asarray(values, dtype=object).tolist()]
    parsed = pd.to_datetime(pd.Series(texts, dtype=object), errors="coerce", format=fmt or "mixed", utc=True)
    ok = parsed.notna().to_numpy()
    out = np.full((len(texts), 4), np.nan)
    if ok.any():
        good = parsed[ok]
        days = (good - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy() / 86400.0
        out[ok] = np.column_stack([days, good.dt.year, good.dt.month, good.dt.day_of_week]).astype(np.float64)
    return out


# ------------------------------------------------------------------------------------ checks
def _text(where: str, v: Any, *, allow_none: bool = False) -> Any:
    if v is None and allow_none:
        return None
    if not isinstance(v, str) or len(v) > _MAX_TEXT:
        raise TypeError(f"{where}: expected a string of at most {_MAX_TEXT} characters, got {type(v).__name__}")
    return v


def _finite(where: str, v: Any, *, allow_none: bool = False) -> Any:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"{where}: expected a finite number, got {v!r}")
    return float(v)


def _flag(where: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"{where}: expected true or false, got {v!r}")
    return v


def _texts(where: str, v: Any) -> list[str]:
    if not isinstance(v, list):
        raise TypeError(f"{where}: expected a list of strings, got {type(v).__name__}")
    out = [_text(where, s) for s in v]
    if len(set(out)) != len(out):
        raise ValueError(f"{where}: duplicate entries")
    return out


_PARAMS = {
    "numeric": {"fill", "indicator"},
    "onehot": {"levels", "rare", "fill", "indicator", "number"},
    "date": {"format", "fill", "indicator"},
}


def _check_params(kind: str, column: str, p: Any) -> dict[str, Any]:
    where = f"step {kind} {column!r}"
    if not isinstance(p, dict) or set(p) != _PARAMS[kind]:
        got = sorted(map(str, p)) if isinstance(p, dict) else type(p).__name__
        raise ValueError(f"{where}: expected parameters {sorted(_PARAMS[kind])}, got {got}")
    if kind == "numeric":
        return {"fill": _finite(f"{where} fill", p["fill"]), "indicator": _flag(f"{where} indicator", p["indicator"])}
    if kind == "onehot":
        levels, rare = _texts(f"{where} levels", p["levels"]), _texts(f"{where} rare", p["rare"])
        if set(levels) & set(rare):
            raise ValueError(f"{where}: a level is both kept and rare")
        if not levels and not rare:
            raise ValueError(f"{where}: no levels")
        return {
            "levels": levels,
            "rare": rare,
            "fill": _text(f"{where} fill", p["fill"], allow_none=True),
            "indicator": _flag(f"{where} indicator", p["indicator"]),
            "number": _finite(f"{where} number", p["number"], allow_none=True),
        }
    fill = p["fill"]
    if not isinstance(fill, list) or len(fill) != 4:
        raise ValueError(f"{where} fill: expected 4 numbers, got {fill!r}")
    return {
        "format": _text(f"{where} format", p["format"], allow_none=True),
        "fill": [_finite(f"{where} fill", v) for v in fill],
        "indicator": _flag(f"{where} indicator", p["indicator"]),
    }


# ------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class Step:
    """One raw column's encoding: ``kind`` (one of :data:`KINDS`), the ``column`` it reads and its
    JSON ``params`` (see the module docstring). Validated on construction."""

    kind: str
    column: str
    params: dict[str, Any] = field(hash=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"step kind: expected one of {list(KINDS)}, got {self.kind!r}")
        _text("step column", self.column)
        object.__setattr__(self, "params", _check_params(self.kind, self.column, self.params))

    @property
    def output_names(self) -> list[str]:
        """Names of the features this step produces, in order."""
        c, p = self.column, self.params
        if self.kind == "numeric":
            out = [c]
        elif self.kind == "date":
            out = [f"{c}__{part}" for part in _DATE_PARTS]
        else:
            out = ([c] if p["number"] is not None else []) + [f"{c}={lv}" for lv in p["levels"]]
            out += [f"{c}=(rare)"] if p["rare"] else []
        return out + ([f"{c}__missing"] if p["indicator"] else [])

    def transform(self, values: Any) -> np.ndarray:
        """The step's outputs for raw cells ``values`` (length n): float64, shape (n, len(output_names))."""
        p = self.params
        cells = np.asarray(values, dtype=object).reshape(-1)
        missing = np.fromiter((is_missing(v) for v in cells.tolist()), dtype=bool, count=cells.shape[0])
        cols: list[np.ndarray] = []
        if self.kind == "numeric":
            x = to_floats(cells)
            cols.append(np.where(np.isnan(x), p["fill"], x))
        elif self.kind == "date":
            parts = parse_dates(cells, p["format"])
            cols.extend(np.where(np.isnan(parts[:, k]), p["fill"][k], parts[:, k]) for k in range(4))
        else:
            texts = [p["fill"] if m else cell_text(v) for v, m in zip(cells.tolist(), missing.tolist(), strict=True)]
            if p["number"] is not None:
                x = to_floats(cells)
                cols.append(np.where(np.isnan(x), p["number"], x))
            index = {lv: k for k, lv in enumerate(p["levels"])}
            onehot = np.zeros((cells.shape[0], len(p["levels"]) + bool(p["rare"])))
            rare = set(p["rare"])
            for i, t in enumerate(texts):
                k = index.get(t)
                if k is not None:
                    onehot[i, k] = 1.0
                elif t in rare:
                    onehot[i, -1] = 1.0
            cols.extend(onehot.T)
        if p["indicator"]:
            cols.append(missing.astype(np.float64))
        return np.column_stack(cols) if cols else np.zeros((cells.shape[0], 0))

    def surprises(self, values: Any) -> int:
        """How many present cells this step cannot read as in training: non-numbers in a numeric
        column, levels never seen in a categorical one, non-dates in a date one (all imputed or zeros)."""
        cells = np.asarray(values, dtype=object).reshape(-1)
        present = [v for v in cells.tolist() if not is_missing(v)]
        if not present:
            return 0
        if self.kind == "numeric":
            return int(np.isnan(to_floats(np.asarray(present, dtype=object))).sum())
        if self.kind == "date":
            return int(np.isnan(parse_dates(np.asarray(present, dtype=object), self.params["format"])[:, 0]).sum())
        known = set(self.params["levels"]) | set(self.params["rare"])
        return sum(cell_text(v) not in known for v in present)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "column": self.column, "params": dict(self.params)}


@dataclass(frozen=True)
class ColumnSteps:
    """The raw columns a table model reads and how (one :class:`Step` each, in output order).

    Attributes
    ----------
    steps : tuple of Step
    dropped : tuple of (str, str)
        Columns seen in training and not used, with the reason (shown to the user; never read).
    id_column : str or None
        A column dropped as an identifier; ``flatnet-xp predict`` copies it into its output.
    """

    steps: tuple[Step, ...]
    dropped: tuple[tuple[str, str], ...] = ()
    id_column: str | None = None

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("columns: no usable feature column")
        names = [s.column for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError("columns: a column has two steps")
        outputs = self.output_names
        if len(set(outputs)) != len(outputs):
            raise ValueError("columns: two steps produce the same feature name")
        if self.id_column is not None:
            _text("columns id_column", self.id_column)

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The raw columns read, in order."""
        return tuple(s.column for s in self.steps)

    @property
    def output_names(self) -> tuple[str, ...]:
        """The features produced, in order (the network's inputs)."""
        return tuple(name for s in self.steps for name in s.output_names)

    def missing_columns(self, available: Sequence[str]) -> list[str]:
        """Columns the steps read that ``available`` lacks."""
        have = set(map(str, available))
        return [c for c in self.input_columns if c not in have]

    def transform(self, frame: Mapping[str, Any] | Any) -> np.ndarray:
        """Replay every step on ``frame`` (a pandas DataFrame or a mapping column -> cells).

        Returns
        -------
        numpy.ndarray, float64, shape (n, len(output_names))

        Raises
        ------
        ValueError
            A column the steps read is missing, or the columns differ in length.
        """
        columns = list(frame.keys()) if hasattr(frame, "keys") else list(frame)
        lost = self.missing_columns(columns)
        if lost:
            raise ValueError(f"missing column{'s' if len(lost) > 1 else ''} {lost[:6]}")
        blocks = [s.transform(np.asarray(frame[s.column], dtype=object)) for s in self.steps]
        n = {b.shape[0] for b in blocks}
        if len(n) > 1:
            raise ValueError(f"columns of different lengths {sorted(n)}")
        return np.concatenate(blocks, axis=1)

    def surprises(self, frame: Mapping[str, Any] | Any) -> list[str]:
        """One note per column whose cells the steps cannot read as in training (see :meth:`Step.surprises`)."""
        what = {"numeric": "non-numeric cells read as missing", "date": "cells that are not dates read as missing",
                "onehot": "levels unseen in training (encoded as zeros)"}  # fmt: skip
        notes = []
        for s in self.steps:
            k = s.surprises(frame[s.column])
            if k:
                notes.append(f"column {s.column!r}: {k} {what[s.kind]}")
        return notes

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [s.to_dict() for s in self.steps],
            "dropped": [list(d) for d in self.dropped],
            "id_column": self.id_column,
        }

    @classmethod
    def from_dict(cls, d: Any) -> ColumnSteps:
        """Rebuild from :meth:`to_dict`'s output, validating every field (the input may be hostile)."""
        if not isinstance(d, dict) or set(d) != {"steps", "dropped", "id_column"}:
            raise ValueError("columns: expected keys ['dropped', 'id_column', 'steps']")
        if not isinstance(d["steps"], list) or not isinstance(d["dropped"], list):
            raise TypeError("columns: steps and dropped must be lists")
        steps = []
        for s in d["steps"]:
            if not isinstance(s, dict) or set(s) != {"kind", "column", "params"}:
                raise ValueError("columns: each step needs exactly kind, column and params")
            steps.append(Step(_text("step kind", s["kind"]), _text("step column", s["column"]), s["params"]))
        dropped = []
        for item in d["dropped"]:
            if not isinstance(item, list) or len(item) != 2:
                raise ValueError("columns: dropped entries are [column, reason]")
            dropped.append((_text("dropped column", item[0]), _text("dropped reason", item[1])))
        return cls(tuple(steps), tuple(dropped), _text("columns id_column", d["id_column"], allow_none=True))
