"""Reading CSV-like tables for the command line with pandas' ``read_csv``, after looking at the file.

What is recognised before pandas reads the file (from its first 64 kB):

- compression by suffix (``.gz``, ``.bz2``, ``.xz``, ``.zip``);
- the encoding: UTF-8 with or without a BOM, else latin-1 (said in the description);
- the delimiter among ``, ; TAB |``, else runs of whitespace (``.dat`` files);
- a header row: the first row is one when it holds a name the caller knows (``--target``, a
  model's columns), text above a column of numbers, text in its first cell above a column of
  text where it does not reappear, or text cells none of which reappears below (so numeric
  column names, years for instance, do not make a header look like data);
- R's row names (a header one field shorter than the rows): the first column is dropped;
- scikit-learn's bundled CSVs (first line ``n_samples,n_features,class names...``): columns
  ``x0...`` and ``target``, the target's integers replaced by the class names.

Missing values: pandas' markers (empty, ``NA``, ``N/A``, ``NaN``, ``null``...) and ``?``.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import itertools
import lzma
import re
import zipfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flatnet_xp.cli._common import CliError
from flatnet_xp.preprocessing.steps import is_missing

__all__ = ["COMPRESSIONS", "TABLE_SUFFIXES", "CsvTable", "read_csv_table", "table_suffix"]

#: Table file endings (before a compression suffix).
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".dat", ".data", ".tab", ".psv")
#: Compression suffixes pandas reads.
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip")
_SAMPLE_BYTES = 1 << 16
_DELIMITERS = (",", ";", "\t", "|")
_EXTRA_NA = ["?"]


@dataclass
class CsvTable:
    """A table read from a CSV-like file: the pandas DataFrame, and how the file was read."""

    frame: Any
    description: str
    header: bool
    notes: list[str] = field(default_factory=list)


def table_suffix(path: Path) -> str:
    """``.csv`` for ``a.csv`` and ``a.csv.gz``: the table suffix under any compression suffix (lower case)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _fail(path: Path, message: str) -> CliError:
    return CliError(f"--data {path}: {message}")


def _raw_sample(path: Path) -> bytes:
    suffix = path.suffix.lower()
    try:
        if suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read(_SAMPLE_BYTES)
        if suffix == ".bz2":
            with bz2.open(path, "rb") as fh:
                return fh.read(_SAMPLE_BYTES)
        if suffix == ".xz":
            with lzma.open(path, "rb") as fh:
                return fh.read(_SAMPLE_BYTES)
        if suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                members = [m for m in z.namelist() if not m.endswith("/")]
                if len(members) != 1:
                    raise _fail(path, f"expected one file in the zip archive, found {len(members)}")
                with z.open(members[0]) as fh:
                    return fh.read(_SAMPLE_BYTES)
        with open(path, "rb") as fh:
            return fh.read(_SAMPLE_BYTES)
    except (OSError, EOFError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        raise _fail(path, f"cannot read it as a {suffix} file ({exc})") from None


def _decode(path: Path, raw: bytes) -> tuple[str, str]:
    """The sample as text (cut at its last whole line) and the encoding pandas should use."""
    if b"\x00" in raw[:4096]:
        raise _fail(path, "a binary file, not a text table (CSV, TSV or whitespace-separated)")
    full = len(raw) < _SAMPLE_BYTES
    cut = raw if full else raw[: raw.rfind(b"\n") + 1] or raw
    try:
        return cut.decode("utf-8-sig"), "utf-8-sig"
    except UnicodeDecodeError:
        return cut.decode("latin-1"), "latin-1"


def _split(lines: list[str], delimiter: str | None) -> list[list[str]]:
    if delimiter is None:  # runs of spaces, quotes respected (as pandas' C engine reads sep=r"\s+")
        try:
            return [[c for c in row if c] for row in csv.reader(lines, delimiter=" ", skipinitialspace=True)]
        except csv.Error:
            return [line.split() for line in lines]
    try:
        return [[c.strip() for c in row] for row in csv.reader(lines, delimiter=delimiter, skipinitialspace=True)]
    except csv.Error:
        return [[line] for line in lines]


def _sniff(lines: list[str]) -> str | None:
    """The delimiter that splits the first line into at least two fields and the other lines most
    consistently (None: runs of whitespace; '': a single column)."""
    head, body = lines[0], lines[1:] or lines
    best: tuple[float, int, str | None] = (-1.0, 1, "")
    for d in (*_DELIMITERS, None):
        width = len(_split([head], d)[0])
        counts = [len(r) for r in _split(body, d)]
        if max(width, *counts) < 2:
            continue
        mode, hits = Counter(counts).most_common(1)[0]
        if mode < 2:
            continue
        score = hits / len(counts)
        if d is None and best[2] != "" and score <= best[0] + 0.2:
            continue  # whitespace only when clearly better than a real delimiter
        if score > best[0]:
            best = (score, width, d)
    return best[2] if best[0] >= 0.5 else ""


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_text(cell: str) -> bool:
    return not is_missing(cell) and not _is_number(cell)


def _counting_names(cells: list[str]) -> bool:
    """At least 3 cells that count up by one (after an optional leading text cell): ``1960,1961,1962``."""
    numbers = [c for c in cells if not _is_text(c)]
    if len(numbers) < 3 or len(numbers) < len(cells) - 1 or not all(c.isdigit() for c in numbers):
        return False
    values = [int(c) for c in numbers]
    return all(b - a == 1 for a, b in itertools.pairwise(values))


def _has_header(rows: list[list[str]], known: set[str]) -> bool:
    first, rest = rows[0], rows[1:]
    if known & {c.strip() for c in first}:
        return True
    if rest and len(first) == len(rest[0]) - 1:
        return True  # R's write.table: row names without a header cell
    if _counting_names(first):
        return True  # 1960,1961,...: year names, not a row of data
    if not any(_is_text(c) for c in first):
        return False
    if not rest:
        return True
    for j, cell in enumerate(first):
        if not _is_text(cell):
            continue
        below = [r[j] for r in rest if j < len(r) and not is_missing(r[j])]
        if below and sum(map(_is_number, below)) * 2 > len(below):
            return True  # a name above numbers
        if j == 0 and below and cell not in below and all(_is_text(c) for c in below):
            return True  # "Country Name" above country names
    if all(_is_text(c) or is_missing(c) for c in first):
        return all(all(j >= len(r) or r[j] != cell for r in rest) for j, cell in enumerate(first))
    return False


_COMMA_NUMBER = re.compile(r"[-+]?\d+,\d+")
_POINT_NUMBER = re.compile(r"[-+]?\d*\.\d+")


def _decimal_comma(rows: list[list[str]]) -> bool:
    """Numbers written ``1,5`` (and none ``1.5``) in the sampled cells."""
    cells = [c for r in rows[1:] for c in r]
    return any(_COMMA_NUMBER.fullmatch(c) for c in cells) and not any(_POINT_NUMBER.fullmatch(c) for c in cells)


def _sklearn_header(rows: list[list[str]]) -> list[str] | None:
    """Class names when the first row is scikit-learn's ``n_samples,n_features,names...``, else None."""
    first = rows[0]
    if len(rows) < 2 or len(first) < 2 or not all(c.isdigit() for c in first[:2]):
        return None
    n_features = int(first[1])
    if len(rows[1]) != n_features + 1 or not all(_is_text(c) for c in first[2:]):
        return None
    return list(first[2:])


def _check_rows(path: Path, rows: list[list[str]], numbers: list[int], delimiter: str | None) -> None:
    """Every sampled row has as many fields as the first (or one more: R's row names)."""
    if len(rows) != len(numbers):  # a quoted field over several lines: leave the counting to pandas
        return
    width = len(rows[0])
    if len(rows) > 1 and len(rows[1]) == width + 1:
        width += 1
    for i, row in enumerate(rows[1:], start=1):
        if len(row) != width:
            sep = {None: "whitespace", "\t": "tab"}.get(delimiter, repr(delimiter))
            raise _fail(
                path,
                f"data row {i} (file line {numbers[i]}) has {len(row)} fields, the header has {width} "
                f"(delimiter {sep}); a ragged row or an unquoted delimiter inside a field",
            )


def read_csv_table(path: Path, known: Iterable[str] = ()) -> CsvTable:
    """Read a CSV-like file into a pandas DataFrame (see the module docstring).

    Parameters
    ----------
    path : Path
        An existing regular file (checked by the caller).
    known : iterable of str
        Column names the caller expects (the target, a model's columns): a first row holding one is
        a header.

    Raises
    ------
    CliError
        One line: pandas missing, the file unreadable, fewer than two columns, no data rows.
    """
    try:
        import pandas as pd
    except ImportError:
        raise CliError("--data: reading tables needs pandas: pip install 'flatnet_xp[tables]'") from None
    text, encoding = _decode(path, _raw_sample(path))
    numbered = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()][:200]
    lines = [line for _, line in numbered]
    numbers = [i for i, _ in numbered]
    if not lines:
        raise _fail(path, "no rows (the file holds only blank lines)")
    delimiter = _sniff(lines)
    if delimiter == "":
        raise _fail(
            path,
            "found 1 column; expected feature columns and a target column separated by ',', ';', tab, '|' or spaces",
        )
    rows = _split(lines, delimiter)
    notes: list[str] = []
    kwargs: dict[str, Any] = {}
    classes = _sklearn_header(rows)
    if classes is None:
        _check_rows(path, rows, numbers, delimiter)
    width = max(len(r) for r in rows[1:]) if len(rows) > 1 else len(rows[0])
    if classes is not None:
        header = False
        kwargs.update(skiprows=1, header=None, names=[*(f"x{j}" for j in range(width - 1)), "target"])
        notes.append("scikit-learn's first line (n_samples, n_features, class names)")
    else:
        header = _has_header(rows, set(known))
        if header:
            named = [c for c in rows[0] if c]
            twice = [c for c, k in Counter(named).items() if k > 1]
            if twice:
                cols = [j + 1 for j, c in enumerate(rows[0]) if c == twice[0]]
                raise _fail(path, f"the header names the column {twice[0]!r} twice (columns {cols[0]} and {cols[1]})")
            kwargs.update(header=0)
            if len(rows) > 1 and len(rows[0]) == len(rows[1]) - 1:
                kwargs.update(index_col=0)
                notes.append("R row names dropped")
        else:
            kwargs.update(header=None, names=[f"x{j}" for j in range(width)])
    sep = r"\s+" if delimiter is None else delimiter
    if delimiter != "," and _decimal_comma(rows):
        kwargs.update(decimal=",")
        notes.append("decimal commas")
    options = dict(sep=sep, compression="infer", na_values=_EXTRA_NA, skipinitialspace=True, **kwargs)
    try:
        try:
            frame = pd.read_csv(path, encoding=encoding, **options)
        except UnicodeDecodeError:  # UTF-8 at the start, not further on
            encoding = "latin-1"
            frame = pd.read_csv(path, encoding=encoding, **options)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError, EOFError) as exc:
        raise _fail(path, f"not a readable table ({' '.join(str(exc).split())[:300]})") from None
    if "index_col" in kwargs:
        frame = frame.reset_index(drop=True)
    elif header and rows[0][0] == "" and frame.shape[1] > 2 and frame.iloc[:, 0].is_unique:
        frame = frame.iloc[:, 1:]  # R's write.csv: "" above the row names
        notes.append("R row names dropped")
    names = [str(c).strip() for c in frame.columns]
    if all(len(n) > 1 and n[0] == n[-1] == "'" for n in names):  # 'OBS' 'GPA': single-quoted names
        names = [n[1:-1] for n in names]
    frame.columns = names
    if classes is not None:
        codes = pd.to_numeric(frame["target"], errors="coerce")
        if codes.notna().all() and ((codes >= 0) & (codes < len(classes)) & (codes == codes.round())).all():
            frame["target"] = [classes[int(v)] for v in codes]
    if frame.shape[0] == 0:
        raise _fail(path, "no data rows (only a header line)" if header else "no data rows")
    if frame.shape[1] < 2:
        raise _fail(path, "found 1 column; expected feature columns and a target column")
    sep_name = {None: "whitespace", "\t": "tab"}.get(delimiter, repr(delimiter))
    parts = [f"delimiter {sep_name}", "a header row" if header else "no header row"]
    if encoding == "latin-1":
        parts.append("latin-1 (not UTF-8)")
    if path.suffix.lower() in COMPRESSIONS:
        parts.append(f"{path.suffix.lower()[1:]} compressed")
    return CsvTable(frame, ", ".join(parts + notes), header, notes)
