"""What a model needs to predict on raw rows: feature names, standardization, target name, task, classes.

:class:`Preprocessing` is a frozen value stored beside the weights in a model file (as the
JSON-serialisable :meth:`Preprocessing.to_dict`), so the file alone turns raw table rows into
predictions. :func:`infer_target` decides the task from the target values the way scikit-learn's
``type_of_target`` does (text labels or a few distinct integers: classification; other numbers:
regression) and encodes the labels.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import numpy as np

from flatnet_xp.preprocessing._target import TASKS
from flatnet_xp.preprocessing.steps import ColumnSteps

__all__ = ["Preprocessing"]

#: Version of :meth:`Preprocessing.to_dict`'s layout (2 added ``columns``; version 1 files still load).
_DICT_VERSION = 2
_KEYS_V1 = frozenset(
    {"version", "feature_names", "means", "scales", "target_name", "task", "class_names", "target_mean", "target_scale"}
)
_KEYS = _KEYS_V1 | {"columns"}
_MAX_NAME = 1024


def _short(items: Sequence[str], limit: int = 6) -> str:
    """``'a', 'b', 'c'`` or ``'a', 'b', ... (12 more)`` for messages."""
    shown = ", ".join(repr(s) for s in items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _names(field: str, value: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
    """A list/tuple of unique, non-empty strings (of bounded length) as a tuple."""
    if not isinstance(value, list | tuple):
        raise TypeError(f"{field}: expected a list of strings, got {type(value).__name__}")
    for s in value:
        if not isinstance(s, str):
            raise TypeError(f"{field}: expected a list of strings, found {type(s).__name__} {s!r}")
        if not s or len(s) > _MAX_NAME:
            raise ValueError(f"{field}: names must be 1 to {_MAX_NAME} characters, found {s[:40]!r}")
    if not value and not allow_empty:
        raise ValueError(f"{field}: expected at least one name, got none")
    if len(set(value)) != len(value):
        dup = sorted(k for k, c in Counter(value).items() if c > 1)
        raise ValueError(f"{field}: duplicate names {_short(dup)}")
    return tuple(value)


def _floats(field: str, value: Any, n: int, *, positive: bool) -> tuple[float, ...]:
    """A list/tuple of ``n`` finite reals (not bools), positive ones if asked, as a tuple of floats."""
    if not isinstance(value, list | tuple):
        raise TypeError(f"{field}: expected a list of numbers or None, got {type(value).__name__}")
    if len(value) != n:
        raise ValueError(f"{field}: expected {n} values (one per feature), got {len(value)}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{field}: expected numbers, found {type(v).__name__} {v!r}")
        f = float(v)
        if not math.isfinite(f) or (positive and f <= 0.0):
            raise ValueError(f"{field}: expected {'positive ' if positive else ''}finite numbers, found {v!r}")
        out.append(f)
    return tuple(out)


@dataclass(frozen=True)
class Preprocessing:
    """How raw rows become network inputs, and what the network's outputs mean.

    Attributes
    ----------
    feature_names : tuple of str
        The input columns, in the order the network expects them.
    means, scales : tuple of float, or None
        Per-feature standardization ``(x - mean) / scale`` (None: features are used as they are).
        Scales are positive; a zero-variance column has scale 1.
    target_name : str or None
        The target column's name (None when the data had none, e.g. a .npz file).
    task : {"classify", "regress"}
    class_names : tuple of str, or None
        Classification: the label of each output, sorted as ``numpy.unique`` sorts the labels.
        Regression: None.
    target_mean, target_scale : float or None
        Regression with standardization: the network learns ``(y - target_mean) / target_scale``
        and :meth:`unscale_target` turns its outputs back into the target's units (None: the target
        is used as it is; always None for classification).
    columns : ColumnSteps or None
        For a model trained on a table: the raw columns it reads and the step (numeric, one-hot,
        date; see :mod:`flatnet_xp.preprocessing.steps`) that turns each into the features
        ``feature_names``, before standardization. None: the features are the raw columns.

    Raises
    ------
    TypeError, ValueError
        On construction, for any field of the wrong type or value (the checks :meth:`from_dict`
        relies on for untrusted input).
    """

    feature_names: tuple[str, ...]
    means: tuple[float, ...] | None
    scales: tuple[float, ...] | None
    target_name: str | None
    task: Literal["classify", "regress"]
    class_names: tuple[str, ...] | None
    target_mean: float | None = None
    target_scale: float | None = None
    columns: ColumnSteps | None = None

    def __post_init__(self) -> None:
        names = _names("feature_names", self.feature_names)
        if self.columns is not None:
            if not isinstance(self.columns, ColumnSteps):
                raise TypeError(f"columns: expected a ColumnSteps or None, got {type(self.columns).__name__}")
            if self.columns.output_names != names:
                raise ValueError("columns: the steps' outputs are not the feature names")
        n = len(names)
        if (self.means is None) != (self.scales is None):
            raise ValueError("means, scales: give both (standardized features) or neither")
        means = None if self.means is None else _floats("means", self.means, n, positive=False)
        scales = None if self.scales is None else _floats("scales", self.scales, n, positive=True)
        if self.target_name is not None:
            if not isinstance(self.target_name, str):
                raise TypeError(f"target_name: expected a string or None, got {type(self.target_name).__name__}")
            if not self.target_name or len(self.target_name) > _MAX_NAME:
                raise ValueError(f"target_name: expected 1 to {_MAX_NAME} characters, got {self.target_name[:40]!r}")
            if self.target_name in names:
                raise ValueError(f"target_name: {self.target_name!r} is also a feature name")
        if not isinstance(self.task, str) or self.task not in TASKS:
            raise ValueError(f"task: expected one of {list(TASKS)}, got {self.task!r}")
        classes = self.class_names
        if self.task == "regress":
            if classes is not None:
                raise ValueError("class_names: a regression model has no classes; expected None")
        else:
            if classes is None:
                raise ValueError("class_names: a classification model needs its class names, got None")
            classes = _names("class_names", classes)
            if len(classes) < 2:
                raise ValueError(f"class_names: expected at least two classes, got {list(classes)}")
        if (self.target_mean is None) != (self.target_scale is None):
            raise ValueError("target_mean, target_scale: give both (a standardized target) or neither")
        if self.target_mean is not None:
            if self.task != "regress":
                raise ValueError("target_mean, target_scale: only a regression target is standardized")
            t_mean, t_scale = (
                _floats("target_mean", [self.target_mean], 1, positive=False)[0],
                _floats("target_scale", [self.target_scale], 1, positive=True)[0],
            )
            object.__setattr__(self, "target_mean", t_mean)
            object.__setattr__(self, "target_scale", t_scale)
        object.__setattr__(self, "feature_names", names)
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "class_names", classes)

    # ------------------------------------------------------------------------------- building
    @classmethod
    def fit_from(
        cls,
        X: Any,
        feature_names: Sequence[str],
        *,
        standardize: bool = True,
        target_name: str | None = None,
        task: Literal["classify", "regress"] = "regress",
        class_names: Sequence[str] | None = None,
        y: Any = None,
        columns: ColumnSteps | None = None,
    ) -> Preprocessing:
        """Learn the per-feature means and scales (population standard deviation) of ``X``, and for
        a regression target ``y`` its mean and scale.

        Parameters
        ----------
        X : array, shape (n, d)
            Finite numbers; n >= 1. Not modified.
        feature_names : sequence of d str
        standardize : bool, default True
            False stores no means and scales (``transform`` then only copies).
        target_name, task, class_names
            Stored as given (see the class attributes).
        y : array, shape (n,), optional
            Regression targets to standardize (with ``standardize``); ignored for classification.
            Must have one finite value per row of ``X``.
        columns : ColumnSteps, optional
            Stored as given (the steps that made ``X`` from a table's raw columns).

        Raises
        ------
        ValueError
            ``X`` or ``y`` hold NaN/missing or infinite values, ``y`` has a different length than
            ``X``, values too large to standardize.
        """
        if not isinstance(standardize, bool):
            raise TypeError(f"standardize: expected a bool, got {type(standardize).__name__}")
        names = _names("feature_names", list(feature_names))
        x = _as_matrix(X, len(names))
        if x.shape[0] < 1:
            raise ValueError("X: expected at least one row to learn the standardization from, got 0")
        means = scales = None
        if standardize:
            with np.errstate(over="ignore", invalid="ignore"):
                mu = x.mean(axis=0)
                sd = x.std(axis=0)
            bad = ~(np.isfinite(mu) & np.isfinite(sd))
            if bad.any():  # X is finite (checked): only an overflow gets here
                raise ValueError(
                    f"X: column {names[int(np.argmax(bad))]!r} has values too large to standardize (overflow)"
                )
            # Zero (or round-off-level) variance: scale 1, as scikit-learn's StandardScaler does.
            constant = sd <= 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mu))
            sd = np.where(constant, 1.0, sd)
            means, scales = tuple(float(v) for v in mu), tuple(float(v) for v in sd)
        t_mean = t_scale = None
        if y is not None:
            t = np.asarray(y, dtype=np.float64).reshape(-1)
            if t.shape[0] != x.shape[0]:
                raise ValueError(f"y: expected {x.shape[0]} values (one per row of X), got {t.shape[0]}")
            if np.isnan(t).any():
                i = int(np.argmax(np.isnan(t)))
                raise ValueError(f"y: NaN (a missing value) at row {i}; drop or fill the rows without a target")
            if np.isinf(t).any():
                i = int(np.argmax(np.isinf(t)))
                raise ValueError(f"y: infinite value {float(t[i])} at row {i}")
        if standardize and task == "regress" and y is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                t_mean, t_sd = float(t.mean()), float(t.std())
            if not (math.isfinite(t_mean) and math.isfinite(t_sd)):
                raise ValueError("y: target values too large to standardize (overflow)")
            t_scale = 1.0 if t_sd <= 10 * np.finfo(np.float64).eps * max(1.0, abs(t_mean)) else t_sd
        return cls(
            names,
            means,
            scales,
            target_name,
            task,
            None if class_names is None else tuple(class_names),
            t_mean,
            t_scale,
            columns,
        )

    # ------------------------------------------------------------------------------- using
    @property
    def n_features(self) -> int:
        """Number of input columns."""
        return len(self.feature_names)

    @property
    def standardized(self) -> bool:
        """True when :meth:`transform` standardizes (means and scales are stored)."""
        return self.means is not None

    def transform(self, X: Any) -> np.ndarray:
        """Standardized features as a NEW float64 array of shape (n, d); ``X`` is never modified.

        Raises
        ------
        ValueError
            ``X`` is not 2-D with ``n_features`` columns, or holds non-finite values.
        """
        x = _as_matrix(X, self.n_features)
        if self.means is None or self.scales is None:
            return np.array(x, dtype=np.float64, copy=True)
        return (x - np.asarray(self.means)) / np.asarray(self.scales)

    def scale_target(self, y: Any) -> np.ndarray:
        """Regression targets in the network's units (standardized when a target scale is stored)."""
        t = np.asarray(y, dtype=np.float64)
        if self.target_mean is None or self.target_scale is None:
            return t
        return (t - self.target_mean) / self.target_scale

    def unscale_target(self, outputs: Any) -> np.ndarray:
        """The network's regression outputs in the target's units (inverse of :meth:`scale_target`)."""
        from flatnet_xp.backends import to_numpy

        z = np.asarray(to_numpy(outputs), dtype=np.float64)
        if self.target_mean is None or self.target_scale is None:
            return z
        return z * self.target_scale + self.target_mean

    def check_columns(self, names: Sequence[str]) -> None:
        """Check that ``names`` are exactly :attr:`feature_names`, in the same order.

        Raises
        ------
        ValueError
            Naming the missing, unexpected, duplicated or reordered columns.
        """
        got = [str(n) for n in names]
        if tuple(got) == self.feature_names:
            return
        if len(set(got)) != len(got):
            dup = sorted(k for k, c in Counter(got).items() if c > 1)
            raise ValueError(f"duplicate columns {_short(dup)}")
        got_set, want_set = set(got), set(self.feature_names)
        missing = [n for n in self.feature_names if n not in got_set]
        extra = [n for n in got if n not in want_set]
        parts = []
        if missing:
            parts.append(f"missing column{'s' if len(missing) > 1 else ''} {_short(missing)}")
        if extra:
            parts.append(f"unexpected column{'s' if len(extra) > 1 else ''} {_short(extra)}")
        if parts:
            raise ValueError("; ".join(parts) + f" (the model was trained on {_short(self.feature_names)})")
        first = next(i for i, (a, b) in enumerate(zip(got, self.feature_names, strict=True)) if a != b)
        raise ValueError(
            f"columns in a different order than in training: position {first + 1} holds {got[first]!r}, "
            f"expected {self.feature_names[first]!r} (expected order: {_short(self.feature_names)})"
        )

    def decode(self, indices: Any) -> np.ndarray:
        """Class names (a NumPy string array) of class indices (classification only)."""
        if self.class_names is None:
            raise ValueError("decode: a regression model has no classes")
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"decode: expected integer class indices, got dtype {idx.dtype}")
        k = len(self.class_names)
        bad = (idx < 0) | (idx >= k)
        if bad.any():
            raise ValueError(f"decode: class indices must be in [0, {k - 1}], got {int(idx[bad].reshape(-1)[0])}")
        return np.asarray(self.class_names)[idx]

    # ------------------------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (lists, strings, floats, None); :meth:`from_dict` inverts it exactly."""
        return {
            "version": _DICT_VERSION,
            "feature_names": list(self.feature_names),
            "means": None if self.means is None else list(self.means),
            "scales": None if self.scales is None else list(self.scales),
            "target_name": self.target_name,
            "task": self.task,
            "class_names": None if self.class_names is None else list(self.class_names),
            "target_mean": self.target_mean,
            "target_scale": self.target_scale,
            "columns": None if self.columns is None else self.columns.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Any) -> Preprocessing:
        """Rebuild from :meth:`to_dict`'s output, validating every field (the input may be hostile).

        Raises
        ------
        TypeError
            ``d`` is not a dict, or a field has the wrong type.
        ValueError
            Missing or unknown keys, an unknown version, or a field with a wrong value.
        """
        if not isinstance(d, dict):
            raise TypeError(f"preprocessing: expected a dict, got {type(d).__name__}")
        version = d.get("version")
        if type(version) is not int or version not in (1, _DICT_VERSION):
            raise ValueError(f"preprocessing: version {version!r}, this library reads 1 to {_DICT_VERSION}")
        expected = _KEYS_V1 if version == 1 else _KEYS
        keys = set(d)
        if keys != expected:
            missing, extra = sorted(expected - keys), sorted(str(k) for k in keys - expected)
            raise ValueError(f"preprocessing: missing keys {missing}, unknown keys {extra[:10]}")
        for key in ("feature_names", "means", "scales", "class_names"):
            if d[key] is not None and not isinstance(d[key], list):
                raise TypeError(f"preprocessing: {key}: expected a list or null, got {type(d[key]).__name__}")
        if d["feature_names"] is None:
            raise TypeError("preprocessing: feature_names: expected a list, got null")
        if not isinstance(d["task"], str):
            raise TypeError(f"preprocessing: task: expected a string, got {type(d['task']).__name__}")
        try:
            return cls(
                tuple(d["feature_names"]),
                None if d["means"] is None else tuple(d["means"]),
                None if d["scales"] is None else tuple(d["scales"]),
                d["target_name"],
                cast(Literal["classify", "regress"], d["task"]),  # its value is checked in __post_init__
                None if d["class_names"] is None else tuple(d["class_names"]),
                d["target_mean"],
                d["target_scale"],
                None if d.get("columns") is None else ColumnSteps.from_dict(d["columns"]),
            )
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"preprocessing: {exc}") from None


def _as_matrix(X: Any, n_features: int) -> np.ndarray:
    """``X`` as a finite 2-D float64 NumPy array with ``n_features`` columns (a view where possible)."""
    from flatnet_xp.backends import to_numpy

    x = to_numpy(X)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"X: expected numbers, got an array of dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(f"X: expected shape (n, {n_features}), got {tuple(x.shape)}")
    x = np.asarray(x, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise ValueError(f"X: non-finite value {float(x[row, col])} at row {int(row)}, column {int(col)}")
    return x
