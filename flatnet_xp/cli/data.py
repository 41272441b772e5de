"""Reading tables for the command line: CSV files from the wild (stdlib ``csv``) and ``.npz`` arrays.

CSV: UTF-8 with or without a BOM, the delimiter detected among ``, ; TAB |``, quoted fields,
CRLF or LF line ends, blank lines skipped, whitespace around cells ignored, an optional header row
(detected). Missing values (an empty cell, ``NA``, ``N/A``, ``NaN``, ``null``, ``?``; any case)
are errors, as are non-numeric feature cells and rows with the wrong number of fields.

Every message about a row names it the same way: ``data row R (file line L)``, where data rows count
from 1 after the header (blank lines are not rows) and file lines count every physical line from 1,
as an editor shows them. For a ``.npz`` there are only data rows.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import re
import sys
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flatnet_xp.cli._common import CliError, check_input
from flatnet_xp.preprocessing import number_from_text

__all__ = [
    "DATA_SUFFIXES",
    "MISSING",
    "Table",
    "read_prediction_features",
    "read_training_table",
]

#: File name endings ``--data`` accepts.
DATA_SUFFIXES = (".csv", ".tsv", ".txt", ".npz")
#: Cells read as missing values (compared in lower case, after stripping whitespace).
MISSING = frozenset({"", "na", "n/a", "nan", "null", "?"})
_DELIMITERS = (",", ";", "\t", "|")
_SAMPLE_CHARS = 1 << 16
_SNIFF_ROWS = 100
_GENERATED = re.compile(r"x\d+")
_DECIMAL_COMMA = re.compile(r"[-+]?\d*,\d+")


@contextlib.contextmanager
def _long_fields() -> Iterator[None]:
    """Lift the csv module's (process-wide) 128 kB field limit while we read: long text cells are legitimate."""
    saved = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(saved)


@dataclass(frozen=True)
class Table:
    """Features and (raw) targets read from a file.

    Attributes
    ----------
    X : numpy.ndarray, shape (n, d), float64
        Finite numbers.
    y : numpy.ndarray, shape (n,), or None
        The target cells as they were (strings from a CSV, the ``y`` array of a ``.npz``).
    feature_names : tuple of str
    target_name : str or None
    description : str
        How the file was read, for the user (delimiter, header).
    """

    X: np.ndarray
    y: np.ndarray | None
    feature_names: tuple[str, ...]
    target_name: str | None
    description: str


def _fail(path: Path, message: str) -> CliError:
    return CliError(f"--data {path}: {message}")


def _where(row: int, line: int | None) -> str:
    return f"data row {row}" + (f" (file line {line})" if line is not None else "")


def _is_missing(cell: str) -> bool:
    return cell.lower() in MISSING


def _is_number(cell: str) -> bool:
    try:
        number_from_text(cell)
    except ValueError:
        return False
    return True


def _shown(names: tuple[str, ...] | list[str], limit: int = 8) -> str:
    text = ", ".join(repr(n) for n in names[:limit])
    return text + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


# ------------------------------------------------------------------------------------ CSV
def _nonblank(cells: list[str]) -> bool:
    return any(c.strip() for c in cells)


def _sniff(sample: str) -> str:
    """The delimiter giving the most consistent field count (> 1) over the first rows; ',' if none does."""
    best: tuple[float, int] = (0.0, 1)
    choice = ","
    for d in _DELIMITERS:
        try:
            rows = [r for r in csv.reader(io.StringIO(sample), delimiter=d, skipinitialspace=True) if _nonblank(r)]
        except csv.Error:
            continue
        counts = [len(r) for r in rows[:_SNIFF_ROWS]]
        if not counts:
            continue
        modal, hits = Counter(counts).most_common(1)[0]
        score = (hits / len(counts), modal)
        if modal > 1 and score > best:
            best, choice = score, d
    return choice


def _has_header(rows: list[list[str]]) -> bool:
    """True when the first row reads as column names rather than data.

    Evidence: a text cell above a column of numbers; or, failing that, a row of text cells none of
    which reappears in its column (as ``csv.Sniffer.has_header`` reasons).
    """
    first, rest = rows[0], rows[1:]
    kinds = ["missing" if _is_missing(c) else "number" if _is_number(c) else "text" for c in first]
    if "text" not in kinds:
        return False
    if not rest:
        return True
    for j, kind in enumerate(kinds):
        if kind != "text":
            continue
        below = [r[j] for r in rest if j < len(r) and not _is_missing(r[j])]
        if below and sum(_is_number(c) for c in below) * 2 > len(below):
            return True
    if all(k == "text" for k in kinds):
        return all(all(j >= len(r) or r[j] != cell for r in rest) for j, cell in enumerate(first))
    return False


class _Csv:
    """A CSV file's dialect, header and column names, and an iterator over its data rows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                sample = fh.read(_SAMPLE_CHARS)
                at_end = not fh.read(1)
        except UnicodeDecodeError as exc:
            raise self._not_utf8(exc) from None
        except OSError as exc:
            raise _fail(path, exc.strerror or str(exc)) from None
        if not at_end:  # drop the partial last line of the sample
            sample = sample[: sample.rfind("\n") + 1] or sample
        self.delimiter = _sniff(sample)
        head = []
        try:
            for cells in csv.reader(io.StringIO(sample), delimiter=self.delimiter, skipinitialspace=True):
                if _nonblank(cells):
                    head.append([c.strip() for c in cells])
                    if len(head) > 50:
                        break
        except csv.Error as exc:
            raise _fail(path, f"not a readable CSV file ({exc})") from None
        if not head:
            raise _fail(path, "no rows (the file holds only blank lines)")
        self.header = _has_header(head)
        if self.header:
            names = [c or f"unnamed_{j}" for j, c in enumerate(head[0])]
            counts = Counter(names)
            dup = [n for n in names if counts[n] > 1]
            if dup:
                cols = [j + 1 for j, n in enumerate(names) if n == dup[0]]
                raise _fail(path, f"the header names the column {dup[0]!r} twice (columns {cols[0]} and {cols[1]})")
            self.names = names
        else:
            self.names = [f"x{j}" for j in range(len(head[0]))]

    def _not_utf8(self, exc: UnicodeDecodeError) -> CliError:
        return _fail(self.path, f"not UTF-8 text ({exc.reason} at byte {exc.start} of a block); save it as UTF-8")

    @property
    def separator(self) -> str:
        """The delimiter for messages: ``','``, ``';'``, ``'|'`` or ``tab``."""
        return "tab" if self.delimiter == "\t" else repr(self.delimiter)

    @property
    def description(self) -> str:
        return f"delimiter {self.separator}, {'a header row' if self.header else 'no header row'}"

    def rows(self) -> Iterator[tuple[int, int, list[str]]]:
        """``(data_row, file_line, cells)`` for every non-blank row after the header; cells stripped."""
        width = len(self.names)
        try:
            with open(self.path, encoding="utf-8-sig", newline="") as fh:
                reader = csv.reader(fh, delimiter=self.delimiter, skipinitialspace=True)
                skipped_header = not self.header
                row = 0
                line = 1
                for cells in reader:
                    start, line = line, reader.line_num + 1
                    if not _nonblank(cells):
                        continue
                    if not skipped_header:
                        skipped_header = True
                        continue
                    row += 1
                    if len(cells) != width:
                        like = "the header" if self.header else "the first row"
                        raise _fail(
                            self.path,
                            f"{_where(row, start)} has {len(cells)} fields, {like} has {width} "
                            f"(delimiter {self.separator}); a ragged row or an unquoted "
                            "delimiter inside a field",
                        )
                    yield row, start, [c.strip() for c in cells]
        except UnicodeDecodeError as exc:
            raise self._not_utf8(exc) from None
        except csv.Error as exc:
            raise _fail(self.path, f"not a readable CSV file near file line {line} ({exc})") from None

    def column(self, target: str | None) -> int:
        """Index of the column ``target`` names (a header name, or an index; default: the last)."""
        n = len(self.names)
        if target is None:
            return n - 1
        if target in self.names:
            return self.names.index(target)
        try:
            index = int(target)
        except ValueError:
            index = None
        if index is not None and -n <= index < n:
            return index % n
        raise CliError(f"--target {target!r}: not a column of {self.path} (columns: {_shown(self.names)})")

    def read(self, features: list[int], target: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The feature columns as float64 (n, len(features)) and the target cells (str array) if asked."""
        values = array("d")
        labels: list[str] = []
        names = self.names
        n_rows = 0
        for row, line, cells in self.rows():
            for j in features:
                cell = cells[j]
                try:
                    v = number_from_text(cell)
                except ValueError:
                    if _is_missing(cell):
                        raise self._missing(row, line, j, cell) from None
                    raise self._not_numeric(row, line, j, cell) from None
                if not math.isfinite(v):
                    if _is_missing(cell):
                        raise self._missing(row, line, j, cell)
                    raise _fail(self.path, f"infinite value {cell!r} at {_where(row, line)}, column {names[j]!r}")
                values.append(v)
            if target is not None:
                cell = cells[target]
                if _is_missing(cell):
                    raise self._missing(row, line, target, cell)
                labels.append(cell)
            n_rows = row
        if n_rows == 0:
            raise _fail(self.path, "no data rows (only a header line)" if self.header else "no data rows")
        X = np.frombuffer(values, dtype=np.float64).reshape(n_rows, len(features)).copy()
        return X, (np.asarray(labels) if target is not None else None)

    def _missing(self, row: int, line: int, j: int, cell: str) -> CliError:
        what = "an empty cell" if cell == "" else repr(cell)
        return _fail(
            self.path,
            f"missing value at {_where(row, line)}, column {self.names[j]!r} ({what}); "
            "fill it in or remove the row (flatnet-xp does not impute)",
        )

    def _not_numeric(self, row: int, line: int, j: int, cell: str) -> CliError:
        hint = ""
        if _DECIMAL_COMMA.fullmatch(cell):
            hint = "; a decimal comma? write numbers with '.'"
        elif any(d in cell and all(map(_is_number, cell.split(d))) for d in _DELIMITERS if d != self.delimiter):
            hint = f"; is the delimiter right? detected {self.separator}"
        shown = cell if len(cell) <= 40 else cell[:37] + "..."
        return _fail(
            self.path,
            f"column {self.names[j]!r} is not numeric: {shown!r} at {_where(row, line)}; "
            f"feature columns must hold numbers (only the target may hold text labels){hint}",
        )


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
        what = "missing value (NaN)" if np.isnan(X[r, c]) else f"infinite value {X[r, c]!r}"
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
@_long_fields()
def read_training_table(path_text: str, target: str | None) -> Table:
    """Features and raw targets for ``flatnet-xp train`` (see the module docstring for the rules).

    Raises
    ------
    CliError
        With a one-line message naming the file, the row and the column where that helps.
    """
    path = check_input("--data", path_text, DATA_SUFFIXES)
    if path.suffix.lower() == ".npz":
        if target is not None:
            raise CliError("--target: only for CSV files (a .npz holds the features X and the targets y)")
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
        return Table(X, y, names, "y", f"arrays X, {y_name}")
    table = _Csv(path)
    if len(table.names) < 2:
        raise _fail(
            path,
            f"found 1 column ({table.description}); expected feature columns and a target column "
            "separated by ',', ';', tab or '|'",
        )
    t = table.column(target)
    features = [j for j in range(len(table.names)) if j != t]
    X, labels = table.read(features, t)
    return Table(X, labels, tuple(table.names[j] for j in features), table.names[t], table.description)


@_long_fields()
def read_prediction_features(path_text: str, prep: Any) -> tuple[np.ndarray, str]:
    """The model's feature columns from a CSV or ``.npz`` (raw, not yet standardized).

    ``prep`` is the model's :class:`~flatnet_xp.preprocessing.Preprocessing`. A CSV must have a
    header naming exactly the model's features in the same order; the target column may also be
    present (it is ignored). A headerless CSV is accepted only for models trained on headerless data
    (columns by position). A ``.npz`` needs ``X`` with the right width (and, if it has
    ``feature_names``, the right names).

    Returns
    -------
    X : numpy.ndarray, shape (n, n_features)
    description : str
    """
    path = check_input("--data", path_text, DATA_SUFFIXES)
    expected = tuple(prep.feature_names)
    if path.suffix.lower() == ".npz":
        X, npz_names = _npz_features(path, _read_npz(path))
        if npz_names is not None:
            _check_columns(path, prep, list(npz_names))
        elif X.shape[1] != len(expected):
            raise _fail(path, f"X has {X.shape[1]} columns, the model expects {len(expected)} ({_shown(expected)})")
        return X, "array X"
    table = _Csv(path)
    names = list(table.names)
    if not table.header:
        generated = all(_GENERATED.fullmatch(n) for n in expected)
        if not generated:
            raise _fail(
                path,
                f"no header row found; the model expects the columns {_shown(expected)}: "
                "add them as the first line, in that order",
            )
        target = prep.target_name
        if len(names) == len(expected) + 1 and target is not None and _GENERATED.fullmatch(target):
            t = int(target[1:])
            if t < len(names):
                features = [j for j in range(len(names)) if j != t]
                return table.read(features, None)[0], table.description
        if len(names) != len(expected):
            raise _fail(path, f"{len(names)} columns, the model expects {len(expected)} (no header row)")
        return table.read(list(range(len(names))), None)[0], table.description
    features = [j for j, n in enumerate(names) if n != prep.target_name]
    _check_columns(path, prep, [names[j] for j in features])
    return table.read(features, None)[0], table.description


def _check_columns(path: Path, prep: Any, names: list[str]) -> None:
    try:
        prep.check_columns(names)
    except ValueError as exc:
        raise _fail(path, f"does not fit the model: {exc}") from None
