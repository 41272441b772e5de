"""Deciding what each column of a table is (its role) and fitting its :class:`~.steps.Step`.

Roles, decided from the training rows only:

- ``numeric``: numbers (a text column whose non-missing cells are at least 95 % numbers counts;
  the rest are read as missing);
- ``categorical``: text with a moderate number of distinct values, or integers with 3 to
  :data:`MAX_INT_LEVELS` distinct values (these also stay a number, so an unseen level still
  carries its value); levels seen fewer than :data:`RARE_COUNT` times share one ``(rare)`` column,
  at most :data:`MAX_LEVELS` levels are kept;
- ``date``: text that parses as dates (at least 95 % of the cells);
- dropped: ``id`` (a different value in every row: integers counting up, a name like ``id``, or
  text), ``constant`` (one value), ``empty`` (all missing), ``free text`` (too many distinct
  texts to be categories), or by ``--drop`` / not in ``--features``.

Missing values are imputed (median, most frequent level) with a ``__missing`` indicator column
where the training rows had any.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flatnet_xp.preprocessing.steps import ColumnSteps, Step, cell_text, is_missing, to_floats

__all__ = ["MAX_INT_LEVELS", "MAX_LEVELS", "RARE_COUNT", "Role", "fit_columns", "roles_table"]

#: Integer columns with 3 to this many distinct values are also one-hot encoded.
MAX_INT_LEVELS = 10
#: At most this many levels of a categorical column get their own output.
MAX_LEVELS = 50
#: Levels seen fewer times than this in training share the ``(rare)`` output.
RARE_COUNT = 3
#: At most this many rare levels are stored (the most frequent); rarer ones encode as unseen levels.
MAX_RARE = 100
#: Texts longer than this are never levels (they encode as all zeros).
MAX_LEVEL_CHARS = 200
_ID_NAME = re.compile(r"(?i)^(id|.*[_ .\-]id|.*ID|index|row|rownames|unnamed: ?0|key|uuid)$")
_DATE_LIKE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")
_MIN_ROWS_FOR_ID = 20


@dataclass(frozen=True)
class Role:
    """One line of the roles table: column name, role, details (for the user)."""

    column: str
    role: str
    details: str


def _fmt(v: float) -> str:
    return f"{float(v):.6g}"


def _date_format(texts: list[str]) -> str | None:
    """The strftime format pandas guesses from the first cell if every cell parses with it, else None."""
    try:
        from pandas.tseries.api import guess_datetime_format
    except ImportError:  # pragma: no cover - older pandas
        return None
    fmt = guess_datetime_format(texts[0])
    return fmt


def _dates(texts: list[str]) -> tuple[str | None, np.ndarray] | None:
    """(format, parts) when at least 95 % of the texts look like and parse as dates, else None."""
    from flatnet_xp.preprocessing.steps import parse_dates

    sample = texts[:200]
    if sum(bool(_DATE_LIKE.match(t)) for t in sample) < 0.95 * len(sample):
        return None
    fmt = _date_format(texts)
    parts = parse_dates(np.asarray(texts, dtype=object), fmt)
    if np.isnan(parts[:, 0]).mean() > 0.05:
        fmt = None
        parts = parse_dates(np.asarray(texts, dtype=object), None)
        if np.isnan(parts[:, 0]).mean() > 0.05:
            return None
    return fmt, parts


def _looks_like_id(name: str, values: np.ndarray | None, n_distinct: int, n: int) -> bool:
    if n < _MIN_ROWS_FOR_ID or n_distinct != n:
        return False
    if values is None:  # text, a different value in every row
        return True
    if not np.all(values == np.round(values)):
        return False
    span = float(values.max() - values.min())
    return bool(_ID_NAME.match(name)) or span == n - 1


def _onehot(cells: list[Any], missing: np.ndarray, number: float | None) -> tuple[Step, str]:
    counts = Counter(cell_text(v) for v, m in zip(cells, missing.tolist(), strict=True) if not m)
    for long in [lv for lv in counts if len(lv) > MAX_LEVEL_CHARS]:  # never a level: all zeros
        del counts[long]
    ordered = sorted(counts, key=lambda lv: (-counts[lv], lv))
    kept = [lv for lv in ordered if counts[lv] >= RARE_COUNT][:MAX_LEVELS]
    if not kept and ordered:
        kept = ordered[:1]
    rare = [lv for lv in ordered if lv not in set(kept)][:MAX_RARE]  # rarer still: unseen (zeros)
    kept_sorted = sorted(kept, key=_level_key)
    fill = ordered[0] if missing.any() else None
    step = Step(
        "onehot",
        "",
        {"levels": kept_sorted, "rare": rare, "fill": fill, "indicator": bool(missing.any()), "number": number},
    )
    detail = f"{len(counts)} levels"
    if rare:
        detail += f" ({len(rare)} rare grouped)"
    shown = ", ".join(kept_sorted[:4]) + (", ..." if len(kept_sorted) > 4 else "")
    return step, f"{detail}: {shown}"


def _level_key(level: str) -> tuple[int, float, str]:
    try:
        return (0, float(level), level)
    except ValueError:
        return (1, 0.0, level)


def _with_column(step: Step, column: str) -> Step:
    return Step(step.kind, column, step.params)


def _missing_note(n_missing: int, n: int, filled: str) -> str:
    return f"; {n_missing} missing -> {filled} + indicator" if n_missing else ""


def _fit_one(name: str, values: Any, forced: bool) -> tuple[Step | None, Role, bool]:
    """The step for one column (None: dropped), its role line, and whether it is an ID column."""
    cells = np.asarray(values, dtype=object).reshape(-1).tolist()
    n = len(cells)
    missing = np.fromiter((is_missing(v) for v in cells), dtype=bool, count=n)
    n_missing = int(missing.sum())
    present = [v for v, m in zip(cells, missing.tolist(), strict=True) if not m]
    if not present:
        return None, Role(name, "dropped", "empty (every value missing)"), False
    texts = [cell_text(v) for v in present]
    n_distinct = len(set(texts))
    if n_distinct == 1 and not forced:
        return None, Role(name, "dropped", f"constant ({texts[0][:30]!r})"), False
    numbers = to_floats(np.asarray(present, dtype=object))
    numeric_share = float(np.mean(~np.isnan(numbers)))
    if numeric_share >= 0.95:
        good = numbers[~np.isnan(numbers)]
        if not forced and _looks_like_id(name, numbers if numeric_share == 1.0 else None, n_distinct, n):
            return None, Role(name, "dropped", "id (a different integer in every row)"), True
        integral = bool(np.all(good == np.round(good)))
        bad = int(np.isnan(numbers).sum())
        all_missing = n_missing + bad
        median = float(np.median(good))
        few = 3 <= n_distinct <= MAX_INT_LEVELS and n >= 10 * n_distinct  # enough rows to learn each level
        if integral and few and numeric_share == 1.0:
            step, detail = _onehot(cells, missing, median)
            note = _missing_note(n_missing, n, f"{step.params['fill']!r}")
            return (
                _with_column(step, name),
                Role(name, "categorical", f"integers, {detail}; also as number{note}"),
                False,
            )
        p: dict[str, Any] = {"fill": median, "indicator": all_missing > 0}
        detail = f"range [{_fmt(good.min())}, {_fmt(good.max())}]"
        if bad:
            detail += f"; {bad} non-numbers read as missing"
        detail += _missing_note(all_missing, n, f"median {_fmt(median)}")
        return Step("numeric", name, p), Role(name, "numeric", detail), False
    dates = None if forced else _dates(texts)
    if dates is not None:
        fmt, parts = dates
        fill = [float(np.nanmedian(parts[:, k])) for k in range(4)]
        unparsed = int(np.isnan(parts[:, 0]).sum())
        p = {"format": fmt, "fill": fill, "indicator": bool(n_missing)}
        detail = f"format {fmt or 'mixed'} -> days since 1970, year, month, weekday"
        detail += _missing_note(n_missing + unparsed, n, "median date")
        return Step("date", name, p), Role(name, "date", detail), False
    if all(len(t) > MAX_LEVEL_CHARS for t in texts):
        return None, Role(name, "dropped", f"free text (cells longer than {MAX_LEVEL_CHARS} characters)"), False
    if not forced and _looks_like_id(name, None, n_distinct, n):
        return None, Role(name, "dropped", "id (a different text in every row)"), True
    if not forced and n_distinct > max(MAX_LEVELS, n // 2):
        return None, Role(name, "dropped", f"free text ({n_distinct} distinct values: not categories)"), False
    step, detail = _onehot(cells, missing, None)
    note = _missing_note(n_missing, n, f"{step.params['fill']!r}")
    return _with_column(step, name), Role(name, "categorical", f"{detail}{note}"), False


def fit_columns(
    frame: Any,
    *,
    target: str | None,
    drop: Sequence[str] = (),
    features: Sequence[str] | None = None,
) -> tuple[ColumnSteps, list[Role]]:
    """Decide every column's role from the training rows of ``frame`` and fit its step.

    Parameters
    ----------
    frame : pandas.DataFrame or mapping column name -> cells
        The training rows, raw (missing cells as NaN/None or text markers).
    target : str or None
        The target column (never a feature).
    drop : sequence of str
        Columns to leave out (``--drop``).
    features : sequence of str, optional
        Use exactly these columns (``--features``), whatever their role would be.

    Returns
    -------
    columns : ColumnSteps
    roles : list of Role
        One per column of ``frame`` except the target, in the frame's order.

    Raises
    ------
    ValueError
        No usable feature column is left.
    """
    steps: list[Step] = []
    roles: list[Role] = []
    dropped: list[tuple[str, str]] = []
    id_column = None
    wanted = None if features is None else set(features)
    for name in map(str, frame.keys()):
        if name == target:
            continue
        if name in set(drop) or (wanted is not None and name not in wanted):
            why = "--drop" if name in set(drop) else "not in --features"
            roles.append(Role(name, "dropped", why))
            dropped.append((name, why))
            continue
        step, role, is_id = _fit_one(name, frame[name], forced=wanted is not None)
        roles.append(role)
        if step is None:
            dropped.append((name, role.details))
            if is_id and id_column is None:
                id_column = name
        else:
            steps.append(step)
    if not steps:
        raise ValueError(
            "no usable feature column: "
            + "; ".join(f"{r.column!r} {r.details}" for r in roles[:6])
            + " (use --features to force columns in)"
        )
    return ColumnSteps(tuple(steps), tuple(dropped), id_column), roles


def roles_table(roles: Sequence[Role], limit: int = 40) -> str:
    """The roles as an aligned text table (at most ``limit`` rows, then a count)."""
    shown = list(roles[:limit])
    wc = max([len("column"), *(len(r.column[:30]) for r in shown)])
    wr = max([len("role"), *(len(r.role) for r in shown)])
    lines = [f"  {'column':<{wc}}  {'role':<{wr}}  details"]
    lines += [f"  {r.column[:30]:<{wc}}  {r.role:<{wr}}  {r.details}" for r in shown]
    if len(roles) > limit:
        lines.append(f"  ... ({len(roles) - limit} more columns)")
    return "\n".join(lines)
