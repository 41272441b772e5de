"""Sphinx configuration for the flatnet_xp documentation.

Build (offline, warnings are errors):  sphinx-build -W --keep-going -b html docs docs/_build/html
Needs ``pip install -e '.[docs]'``. The tutorial pages are executed at build time (myst-nb).
"""

from __future__ import annotations

import inspect
import re
import sys

from sphinx.errors import PycodeError
from sphinx.pycode import ModuleAnalyzer

import flatnet_xp

project = "flatnet_xp"
author = "flatnet_xp contributors"
copyright = "flatnet_xp contributors, MIT License"
release = version = flatnet_xp.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]
# No intersphinx: the build must work offline and never fetch anything.

# -- MyST / myst-nb -----------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# Execute every notebook page on each build: a cache keyed on the page text would not notice a
# change in the library, and the executed pages are the docs' proof that the code still works.
nb_execution_mode = "force"
nb_execution_timeout = 120
nb_execution_raise_on_error = True  # an exception in a cell fails the build
nb_merge_streams = True
nb_render_markdown_format = "myst"  # Markdown outputs (tables) rendered by MyST

# -- autodoc / autosummary / numpydoc -------------------------------------------------------------
autosummary_generate = True
autosummary_ignore_module_all = False  # a module's public names are its __all__
# Module pages (templates/autosummary/module.rst) link the names that have a page of their own and
# document the module's other public names in place.
autosummary_context = {
    "toplevel": list(flatnet_xp.__all__),
    "own_pages": [
        "flatnet_xp.sklearn.FlatMLPClassifier",
        "flatnet_xp.sklearn.FlatMLPRegressor",
        "flatnet_xp.distributed.RemoteRankError",
    ],
}
autodoc_typehints = "none"  # the numpydoc sections carry the types; signatures stay readable
autodoc_member_order = "bysource"
autodoc_default_options = {"exclude-members": "__init__, __new__"}
numpydoc_show_class_members = False  # members come from the class template's :members:
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
numpydoc_attributes_as_param_list = True

# -- HTML -----------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"flatnet_xp {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_show_sourcelink = False
html_copy_source = False


# -- Docstrings inherited from scikit-learn ---------------------------------------------------------
# The estimators inherit ``score`` from scikit-learn's mixins; its docstring cross-references
# scikit-learn's own documentation labels (``:ref:`accuracy_score```), which do not exist here
# (no intersphinx: the build is offline). Show those references as plain text, and leave out the
# metadata-routing boilerplate (``set_*_request``, ``get_metadata_routing``) every estimator has.
_SKLEARN_ROLE = re.compile(r":(?:ref|term):`([^`<]*?)(?:\s*<[^`]*>)?`")


def _sklearn_docstring(app, what, name, obj, options, lines):
    module = getattr(obj, "__module__", "") or ""
    if module.startswith("sklearn."):
        lines[:] = [_SKLEARN_ROLE.sub(lambda m: f"``{m.group(1).strip()}``", line) for line in lines]


def _skip_routing(app, what, name, obj, skip, options):
    if name == "get_metadata_routing" or (name.startswith("set_") and name.endswith("_request")):
        return True
    return None


def _data_docstring(app, what, name, obj, options, lines):
    """Docstrings of module constants.

    A constant re-exported from another module (``flatnet_xp.BACKENDS`` is defined in
    ``flatnet_xp.backends``) gets the ``#:`` doc comment of its definition; a constant without one
    would show its type's docstring (``int``'s, ``str``'s), so it shows only its value instead.
    """
    if what not in ("data", "attribute"):
        return
    type_doc = inspect.getdoc(type(obj)) or ""
    if lines and "\n".join(lines).strip() != type_doc.strip():
        return  # a doc comment of its own
    lines.clear()
    short = name.rpartition(".")[2]
    for modname in sorted(m for m in sys.modules if m == "flatnet_xp" or m.startswith("flatnet_xp.")):
        if getattr(sys.modules[modname], short, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except PycodeError:
            continue
        if ("", short) in docs:
            lines.extend(line.rstrip("\n") for line in docs[("", short)])
            return


def setup(app):
    app.connect("autodoc-process-docstring", _sklearn_docstring)
    app.connect("autodoc-process-docstring", _data_docstring, priority=100)  # before numpydoc
    app.connect("autodoc-skip-member", _skip_routing)
