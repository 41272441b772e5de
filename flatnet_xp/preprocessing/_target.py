"""Target columns: decide the task from the values (as scikit-learn's ``type_of_target`` does) and encode them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = ["MAX_AUTO_CLASSES", "TASKS", "Target", "infer_target", "number_from_text"]

#: Tasks a model can be trained for.
TASKS = ("classify", "regress")
#: Integer targets with at most this many distinct values are inferred to be class labels.
MAX_AUTO_CLASSES = 20


# ------------------------------------------------------------------------------------ targets
@dataclass(frozen=True)
class Target:
    """An encoded target column.

    Attributes
    ----------
    task : {"classify", "regress"}
    y : numpy.ndarray, shape (n,)
        Class indices (int64, into ``class_names``) or numbers (float64).
    class_names : tuple of str, or None
    reason : str
        Why this task was chosen (for the user), e.g. ``"text labels"``.
    """

    task: Literal["classify", "regress"]
    y: np.ndarray
    class_names: tuple[str, ...] | None
    reason: str


def number_from_text(text: str) -> float:
    """The number a text cell holds, as ``float`` reads it but stricter: no digit-group
    underscores (``"1_000"``) and ASCII only (no ``"١٢"``), as in CSV files from the wild.

    Raises
    ------
    ValueError
        Not a number.
    """
    value = float(text)
    if "_" in text or not text.isascii():
        raise ValueError(f"not a plain number: {text!r}")
    return value


def _numbers_of(values: Any) -> np.ndarray | None:
    """float64 array of ``values`` when every one is a number (or a numeric string), else None."""
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64)
    if arr.dtype.kind not in "US":
        return None
    out = np.empty(arr.shape[0], dtype=np.float64)
    for i, v in enumerate(arr.tolist()):
        try:
            out[i] = number_from_text(v)
        except ValueError:
            return None
    return out


_EXACT_LIMIT = 2.0**53  # integers at or above this may share one float64


def _exact_integers(arr: np.ndarray) -> list[int] | None:
    """The exact integers of integer arrays or integer texts (``"9007199254740993"``), else None."""
    if arr.dtype.kind in "iu":
        return [int(v) for v in arr.tolist()]
    if arr.dtype.kind not in "US":
        return None
    out = []
    for v in arr.tolist():
        try:
            number_from_text(str(v))
            out.append(int(str(v).strip()))
        except ValueError:  # "1e16", "3.0": the float is all there is
            return None
    return out


def _int_name(v: float) -> str:
    return str(int(v))


def infer_target(
    values: Any,
    task: Literal["classify", "regress"] | None = None,
    *,
    name: str = "target",
    max_classes: int = MAX_AUTO_CLASSES,
) -> Target:
    """Decide the task from target values as scikit-learn's ``type_of_target`` would, and encode them.

    Text labels (any value that is not a number), booleans, or integers (integral floats count)
    with at most ``max_classes`` distinct values: classification, classes sorted as
    ``numpy.unique`` sorts them (integer classes are named by their decimal value). Other numbers:
    regression. ``task`` overrides the inference.

    Parameters
    ----------
    values : sequence of str or numbers, or 1-D array, length n
        Missing values must have been rejected before (a NaN here is an error).
    task : {"classify", "regress"}, optional
    name : str
        The target's name, for messages.

    Raises
    ------
    ValueError
        Regression of text labels, classification of non-integer numbers, fewer than two
        classes, non-finite numbers, no values.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"task: expected one of {list(TASKS)} or None, got {task!r}")
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"target {name!r}: expected one value per row (shape (n,)), got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"target {name!r}: no values")
    nums = _numbers_of(arr)
    if arr.dtype.kind == "b":
        labels = np.where(arr, "True", "False")
        reason = "boolean labels"
    elif nums is None:
        labels = np.asarray([str(v) for v in arr.tolist()])
        reason = "text labels"
    else:
        finite = np.isfinite(nums)
        if not finite.all():
            i = int(np.argmin(finite))
            raise ValueError(f"target {name!r}: non-finite value {float(nums[i])} at row {i + 1}")
        integral = bool(np.all(nums == np.round(nums)))
        distinct = np.unique(nums)
        exact = _exact_integers(arr) if integral and float(np.abs(nums).max()) >= _EXACT_LIMIT else None
        if task == "regress" or (task is None and not integral):
            return Target("regress", nums, None, "numbers" if task is None else "as requested")
        if not integral:
            bad = nums[int(np.argmax(nums != np.round(nums)))]
            raise ValueError(
                f"target {name!r} holds non-integer numbers (e.g. {float(bad):g}): classification needs class labels"
            )
        n_distinct = distinct.shape[0] if exact is None else len(set(exact))
        if task is None and n_distinct > max_classes:
            return Target(
                "regress",
                nums,
                None,
                f"integers with {n_distinct} distinct values (more than {max_classes})",
            )
        if exact is None:
            classes = tuple(_int_name(v) for v in distinct.tolist())
            y = np.searchsorted(distinct, nums).astype(np.int64)
        else:  # beyond 2**53 float64 merges neighbours: classes from the exact integers
            keys = sorted(set(exact))
            index = {k: i for i, k in enumerate(keys)}
            classes = tuple(str(k) for k in keys)
            y = np.fromiter((index[k] for k in exact), dtype=np.int64, count=len(exact))
        if len(classes) < 2:
            raise ValueError(f"target {name!r} has a single class ({classes[0]!r}): nothing to classify")
        why = f"integers with {len(classes)} distinct values" if task is None else "as requested"
        return Target("classify", y, classes, why)
    if task == "regress":
        raise ValueError(f"target {name!r} holds {reason} (e.g. {str(labels[0])!r}): regression needs numbers")
    uniq, inverse = np.unique(labels, return_inverse=True)
    classes = tuple(str(c) for c in uniq.tolist())
    if len(classes) < 2:
        raise ValueError(f"target {name!r} has a single class ({classes[0]!r}): nothing to classify")
    return Target("classify", inverse.reshape(-1).astype(np.int64), classes, reason)
