"""Reading tables for the command line: CSV-like files (through pandas, see :mod:`.tables`) and ``.npz`` arrays.

A CSV's columns stay raw here (a pandas DataFrame): ``flatnet-xp train`` decides their roles and
fits the column steps on the training rows; ``flatnet-xp predict`` replays the model's steps. A
``.npz`` holds numbers only: ``X`` (and ``y`` for training), optionally ``feature_names``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flatnet_xp.cli._common import CliError, check_input
from flatnet_xp.cli.tables import COMPRESSIONS, TABLE_SUFFIXES, read_csv_table, table_suffix
from flatnet_xp.preprocessing.steps import cell_text, is_missing, to_floats

__all__ = [
    "DATA_SUFFIXES",
    "PredictionTable",
    "Table",
    "check_data_path",
    "read_prediction_table",
    "read_training_table",
]

#: File name endings ``--data`` accepts (CSV-like ones also under a compression suffix).
DATA_SUFFIXES = (*TABLE_SUFFIXES, ".npz")


@dataclass
class Table:
    """Features and (raw) targets read from a file.

    Attributes
    ----------
    X : numpy.ndarray, shape (n, d), float64, or None
        ``.npz``: the finite features. CSV: None (see ``frame``).
    frame : pandas.DataFrame or None
        CSV: the feature columns, raw (rows without a target removed).
    y : numpy.ndarray, shape (n,)
        The target values: numbers (float64) or text (str).
    feature_names : tuple of str
    target_name : str or None
    description : str
        How the file was read, for the user (delimiter, header, encoding...).
    notes : list of str
        Things the user should know (rows dropped for a missing target).
    """

    X: np.ndarray | None
    frame: Any
    y: np.ndarray
    feature_names: tuple[str, ...]
    target_name: str | None
    description: str
    notes: list[str] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return int(self.y.shape[0])


@dataclass
class PredictionTable:
    """What ``flatnet-xp predict`` reads: the model's features (before standardization), the
    target's raw values if the file has the column, and the ID column's values if the model named one."""

    X: np.ndarray
    y: np.ndarray | None
    ids: np.ndarray | None
    description: str
    notes: list[str] = field(default_factory=list)


def _fail(path: Path, message: str) -> CliError:
    return CliError(f"--data {path}: {message}")


def _where(row: int, line: int | None) -> str:
    return f"data row {row}" + (f" (file line {line})" if line is not None else "")


def _shown(names: tuple[str, ...] | list[str], limit: int = 8) -> str:
    text = ", ".join(repr(n) for n in names[:limit])
    return text + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def check_data_path(path_text: str) -> Path:
    """``--data``: an existing readable file, a table (``.csv``, ``.csv.gz``, ``.dat``...) or ``.npz``."""
    p = Path(path_text)
    if p.is_dir():
        raise CliError(f"--data {path_text}: is a folder; give a table file inside it (.csv, .tsv, .dat, .npz)")
    check_input("--data", path_text)
    if p.suffix.lower() == ".safetensors":
        raise CliError(f"--data {path_text}: a model file, not a table (a model goes after --model)")
    if p.suffix.lower() != ".npz" and table_suffix(p) not in TABLE_SUFFIXES and p.suffix.lower() not in COMPRESSIONS:
        got = "".join(p.suffixes[-2:]) or "no extension"
        raise CliError(
            f"--data {path_text}: expected a table file ({', '.join(TABLE_SUFFIXES)}, optionally .gz/.bz2/.xz/.zip) "
            f"or .npz, got {got!r}"
        )
    return p


def _column(path: Path, names: list[str], target: str | None) -> str:
    """The name of the column ``target`` names (a name, else an index; default: the last)."""
    if target is None:
        return names[-1]
    if target in names:
        return target
    folded = [n for n in names if n.strip().lower() == target.strip().lower()]
    if len(folded) == 1:
        return folded[0]
    try:
        index = int(target)
    except ValueError:
        index = None
    if index is not None and -len(names) <= index < len(names) and not any(n.isdigit() for n in names):
        return names[index]
    close = difflib.get_close_matches(target, names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return _no_column(path, names, target, hint)


def _no_column(path: Path, names: list[str], target: str, hint: str) -> str:
    raise CliError(f"--target {target!r}: not a column of {path}{hint} (its {len(names)} columns: {_shown(names)})")


def _target_values(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """The target cells as numbers (float64) or text, and the mask of rows that have one."""
    cells = np.asarray(values, dtype=object)
    present = ~np.fromiter((is_missing(v) for v in cells.tolist()), dtype=bool, count=cells.shape[0])
    kept = cells[present].tolist()
    if all(isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) for v in kept):
        return np.asarray(kept, dtype=np.int64), present  # exact: 2**53 + 1 stays itself
    numbers = to_floats(np.asarray(kept, dtype=object))
    good = ~np.isnan(numbers)
    if good.all():
        return numbers, present
    if good.mean() >= 0.95:  # numbers with a few stray texts ("n.a.", "-"): those rows have no target
        present[np.flatnonzero(present)[~good]] = False
        return numbers[good], present
    return np.asarray([cell_text(v) for v in kept]), present


# ------------------------------------------------------------------------------------ NPZ
def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise _fail(path, "not a readable .npz of numeric arrays (it holds Python objects)") from None
        raise _fail(path, f"not a readable .npz file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise _fail(path, f"not a readable .npz file ({exc})") from None
    except Exception as exc:  # zipfile.BadZipFile and friends
        raise _fail(path, f"not a readable .npz file ({type(exc).__name__}: {exc})") from None


def _npz_features(path: Path, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, tuple[str, ...] | None]:
    name = next((n for n in ("X", "x") if n in arrays), None)
    if name is None:
        raise _fail(path, f"expected an array 'X' (features) in the .npz, found {sorted(arrays)}")
    X = arrays[name]
    if X.ndim != 2 or X.shape[1] < 1:
        raise _fail(path, f"X: expected a 2-D array (rows, features), got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise _fail(path, f"X: expected numbers, got dtype {X.dtype}")
    if X.shape[0] == 0:
        raise _fail(path, "no data rows (X has 0 rows)")
    X = np.asarray(X, dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        names = _npz_names(path, arrays, X.shape[1])
        col = names[c] if names else f"x{c}"
        what = "missing value (NaN)" if np.isnan(X[r, c]) else f"infinite value {float(X[r, c])}"
        raise _fail(path, f"{what} at {_where(r + 1, None)}, column {col!r}")
    return X, _npz_names(path, arrays, X.shape[1])


def _npz_names(path: Path, arrays: dict[str, np.ndarray], width: int) -> tuple[str, ...] | None:
    names = arrays.get("feature_names")
    if names is None:
        return None
    if names.ndim != 1 or names.dtype.kind not in "US" or names.shape[0] != width:
        raise _fail(path, f"feature_names: expected {width} strings (one per column of X), got {names.shape}")
    out = tuple(str(n) for n in names.tolist())
    if len(set(out)) != len(out) or not all(out):
        raise _fail(path, "feature_names: expected distinct, non-empty names")
    return out


# ------------------------------------------------------------------------------------ public
def read_training_table(path_text: str, target: str | None) -> Table:
    """Features and raw targets for ``flatnet-xp train``; rows without a target are dropped (noted).

    Raises
    ------
    CliError
        With a one-line message naming the file, and the row or column where that helps.
    """
    path = check_data_path(path_text)
    if path.suffix.lower() == ".npz":
        if target is not None:
            raise CliError("--target: only for table files (a .npz holds the features X and the targets y)")
        arrays = _read_npz(path)
        X, names = _npz_features(path, arrays)
        y_name = next((n for n in ("y", "Y") if n in arrays), None)
        if y_name is None:
            raise _fail(path, f"expected an array 'y' (targets) in the .npz, found {sorted(arrays)}")
        y = arrays[y_name]
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise _fail(path, f"y: expected shape ({X.shape[0]},) (one target per row of X), got {y.shape}")
        if y.dtype.kind == "f" and np.isnan(y).any():
            raise _fail(path, f"missing value (NaN) at {_where(int(np.argmax(np.isnan(y))) + 1, None)}, column 'y'")
        if y.dtype.kind not in "biufUS":
            raise _fail(path, f"y: expected numbers or text labels, got dtype {y.dtype}")
        names = names or tuple(f"x{j}" for j in range(X.shape[1]))
        if "y" in names:
            raise _fail(path, "feature_names: 'y' is the target's name")
        return Table(X, None, y, names, "y", f"arrays X, {y_name}")
    table = read_csv_table(path, () if target is None else (target,))
    frame = table.frame
    columns = [str(c) for c in frame.columns]
    t = _column(path, columns, target)
    y, present = _target_values(frame[t])
    notes = []
    if not present.all():
        notes.append(f"{int((~present).sum())} rows without a target value (missing or not a number) dropped")
    if not present.any():
        raise _fail(path, f"the target column {t!r} has no values (every cell is missing)")
    features = frame.loc[present, [c for c in columns if c != t]].reset_index(drop=True)
    return Table(None, features, y, tuple(features.columns), t, table.description, notes)


def read_prediction_table(path_text: str, prep: Any) -> PredictionTable:
    """The model's features (before standardization) from a table or ``.npz`` file.

    ``prep`` is the model's :class:`~flatnet_xp.preprocessing.Preprocessing`. A model with column
    steps reads its raw columns by name (in any order; other columns are ignored) and replays the
    steps. A model without (trained on a ``.npz``, or by an older version) needs exactly its
    feature columns in the same order, all numbers; the target column may also be there.
    """
    path = check_data_path(path_text)
    target = prep.target_name
    if path.suffix.lower() == ".npz":
        if prep.columns is not None:
            raise _fail(
                path, f"this model reads table columns ({_shown(list(prep.columns.input_columns))}); give a CSV"
            )
        X, npz_names = _npz_features(path, _read_npz(path))
        if npz_names is not None:
            _check_columns(path, prep, list(npz_names))
        elif X.shape[1] != prep.n_features:
            raise _fail(path, f"X has {X.shape[1]} columns, the model expects {prep.n_features}")
        return PredictionTable(X, None, None, "array X")
    known: tuple[str, ...] = prep.columns.input_columns if prep.columns is not None else prep.feature_names
    table = read_csv_table(path, (*known, *([target] if target else [])))
    frame = table.frame
    names = list(frame.columns)
    y = None
    if target is not None and target in names:
        y = np.asarray(frame[target], dtype=object)
    if prep.columns is not None:
        lost = prep.columns.missing_columns(names)
        if lost and not table.header:
            raise _fail(
                path,
                f"no header row found; the model expects the columns {_shown(list(prep.columns.input_columns))}: "
                "add them as the first line",
            )
        if lost:
            hint = ""
            if len(lost) == 1:
                close = difflib.get_close_matches(lost[0], names, n=2, cutoff=0.6)
                hint = f" (a near name: {close[0]!r})" if close else ""
            raise _fail(
                path,
                f"does not fit the model: missing column{'s' if len(lost) > 1 else ''} {_shown(lost)}{hint}; "
                f"the model reads {_shown(list(prep.columns.input_columns))}",
            )
        X = prep.columns.transform(frame)
        id_col = prep.columns.id_column
        ids = np.asarray(frame[id_col], dtype=object) if id_col is not None and id_col in names else None
        return PredictionTable(X, y, ids, table.description, prep.columns.surprises(frame))
    expected = tuple(prep.feature_names)
    if not table.header and all(n.startswith("x") and n[1:].isdigit() for n in expected):
        features = names[: len(expected)] if len(names) == len(expected) else [n for n in names if n != target]
        if len(features) != len(expected):
            raise _fail(path, f"{len(names)} columns, the model expects {len(expected)} (no header row)")
    else:
        if not table.header:
            raise _fail(
                path,
                f"no header row found; the model expects the columns {_shown(list(expected))}: "
                "add them as the first line, in that order",
            )
        features = [n for n in names if n != target]
        _check_columns(path, prep, features)
    X = np.asarray(frame[features].apply(lambda s: s.map(_number)).to_numpy(), dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise _fail(path, f"missing or non-numeric value at {_where(r + 1, None)}, column {features[c]!r}")
    return PredictionTable(X, y, None, table.description)


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _check_columns(path: Path, prep: Any, names: list[str]) -> None:
    try:
        prep.check_columns(names)
    except ValueError as exc:
        raise _fail(path, f"does not fit the model: {exc}") from None
