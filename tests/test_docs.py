"""The API reference (docs/api.rst) lists every public name; no Sphinx needed to check it."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

import flatnet_xp

API = Path(__file__).resolve().parents[1] / "docs" / "api.rst"

#: Public names outside ``flatnet_xp.__all__`` that the reference must document too.
EXTRA = (
    "flatnet_xp.sklearn.FlatMLPClassifier",
    "flatnet_xp.sklearn.FlatMLPRegressor",
    "flatnet_xp.distributed.RemoteRankError",
    "flatnet_xp.layout",
    "flatnet_xp.training",
    "flatnet_xp.optim",
    "flatnet_xp.schedules",
    "flatnet_xp.persistence",
    "flatnet_xp.sklearn",
    "flatnet_xp.distributed",
)


def documented_names(text: str) -> list[str]:
    """Fully qualified names of every entry of every ``autosummary`` table, in order.

    Follows ``.. currentmodule::`` as Sphinx does: an entry ``X`` under ``currentmodule:: m`` is ``m.X``.
    """
    names: list[str] = []
    module = ""
    in_table = False
    for line in text.splitlines():
        if m := re.match(r"\.\. currentmodule::\s*(\S+)", line):
            module = "" if m.group(1) == "None" else m.group(1)
            in_table = False
        elif re.match(r"\.\. autosummary::", line):
            in_table = True
        elif in_table:
            entry = line.strip()
            if not entry or entry.startswith(":"):  # blank line or an option of the directive
                continue
            if not line.startswith((" ", "\t")):  # the table ended
                in_table = False
                continue
            entry = entry.lstrip("~")
            names.append(f"{module}.{entry}" if module and not entry.startswith(module + ".") else entry)
    return names


def test_parser_follows_currentmodule():
    text = "\n".join(
        [".. currentmodule:: a", "", ".. autosummary::", "   :toctree: g", "", "   X", "   a.Y", "", "Text", "",
         ".. autosummary::", "", "   b.Z", ""]
    )  # fmt: skip
    assert documented_names(text) == ["a.X", "a.Y", "a.b.Z"]


def test_every_name_in___all___is_in_the_api_reference():
    documented = set(documented_names(API.read_text(encoding="utf-8")))
    missing = [name for name in flatnet_xp.__all__ if f"flatnet_xp.{name}" not in documented]
    assert not missing, f"docs/api.rst: add these names of flatnet_xp.__all__ to an autosummary table: {missing}"


def test_the_modules_and_extra_names_are_in_the_api_reference():
    documented = set(documented_names(API.read_text(encoding="utf-8")))
    missing = [name for name in EXTRA if name not in documented]
    assert not missing, f"docs/api.rst: add {missing}"


def _resolve(name: str) -> object:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def test_every_documented_name_exists():
    """A name listed for a feature that does not exist yet would break the docs build."""
    for name in documented_names(API.read_text(encoding="utf-8")):
        if name.startswith("flatnet_xp.sklearn") and importlib.util.find_spec("sklearn") is None:
            continue
        try:
            _resolve(name)
        except (ImportError, AttributeError) as exc:
            pytest.fail(f"docs/api.rst lists {name}, which does not exist ({exc})")
