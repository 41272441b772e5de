"""What a model needs to predict on raw rows: the column steps, standardization, target name, task, classes.

:class:`Preprocessing` is a frozen value stored beside the weights in a model file (as the
JSON-serialisable :meth:`Preprocessing.to_dict`), so the file alone turns raw table rows into
predictions. For a table it holds a :class:`ColumnSteps`: one declarative :class:`Step` per raw
column (numeric with imputation, one-hot, date parts), whose roles :func:`fit_columns` decides.
:func:`infer_target` decides the task from the target values the way scikit-learn's
``type_of_target`` does (text labels or a few distinct integers: classification; other numbers:
regression) and encodes the labels.
"""

from flatnet_xp.preprocessing._core import Preprocessing
from flatnet_xp.preprocessing._target import MAX_AUTO_CLASSES, TASKS, Target, infer_target, number_from_text
from flatnet_xp.preprocessing.roles import Role, fit_columns, roles_table
from flatnet_xp.preprocessing.steps import ColumnSteps, Step

__all__ = [
    "MAX_AUTO_CLASSES",
    "TASKS",
    "ColumnSteps",
    "Preprocessing",
    "Role",
    "Step",
    "Target",
    "fit_columns",
    "infer_target",
    "number_from_text",
    "roles_table",
]
