"""Export arguments checked at the boundary, and the atomic write of the ``.onnx`` file."""

from __future__ import annotations

import numbers
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from flatnet_xp._atomic import atomic_write_bytes, check_output_path
from flatnet_xp._validation import check_dtype
from flatnet_xp.export._columns import TEXT_OPSET, needs_text_opset
from flatnet_xp.export._model import build_model
from flatnet_xp.layout import Layout
from flatnet_xp.losses import Loss
from flatnet_xp.preprocessing.steps import ColumnSteps

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "check_opset",
    "onnx_model",
    "require_onnx",
    "write_ensemble_onnx",
    "write_onnx",
]

#: Opset written by default: supported by onnxruntime >= 1.14 and every converter we know of.
DEFAULT_OPSET = 17
#: Oldest opset accepted (``Relu`` on float64 arrived in 14).
MIN_OPSET = 14


def require_onnx() -> Any:
    """The ``onnx`` module, or an ImportError naming the extra to install."""
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install 'flatnet_xp[onnx]'") from None
    return onnx


def check_opset(opset: Any) -> int:
    """``opset`` (None: :data:`DEFAULT_OPSET`) as an int the installed onnx package can write."""
    if opset is None:
        return DEFAULT_OPSET
    newest = int(require_onnx().defs.onnx_opset_version())
    if isinstance(opset, bool) or not isinstance(opset, numbers.Integral):
        raise TypeError(f"opset: expected an integer from {MIN_OPSET} to {newest} or None, got {opset!r}")
    if not MIN_OPSET <= int(opset) <= newest:
        raise ValueError(f"opset: expected an integer from {MIN_OPSET} to {newest} (this onnx), got {opset!r}")
    return int(opset)


def _loss_name(loss: str | Loss | None) -> str | None:
    return loss.name if isinstance(loss, Loss) else loss


def onnx_model(
    layout: Layout,
    activations: Sequence[str],
    params: np.ndarray,
    *,
    dtype: Any,
    opset: Any = None,
    loss: str | Loss | None = None,
    preprocessing: dict[str, Any] | None = None,
) -> Any:
    """The ``onnx.ModelProto`` of a network (see :mod:`flatnet_xp.export._model` for its graph).

    ``dtype`` is anything :func:`flatnet_xp._validation.check_dtype` reads; ``opset`` None is
    :data:`DEFAULT_OPSET`.

    Raises
    ------
    ValueError
        Unsupported opset, parameters that overflow ``dtype``, or a stored preprocessing step with
        no ONNX form (named).
    TypeError
        ``dtype`` is not float32 or float64; ``opset`` is not an integer.
    ImportError
        onnx is not installed.
    """
    require_onnx()
    name = check_dtype(dtype, "dtype")
    version = check_opset(opset)
    columns = None if preprocessing is None else preprocessing.get("columns")
    if opset is None and columns is not None and needs_text_opset(ColumnSteps.from_dict(columns)):
        version = max(version, min(TEXT_OPSET, int(require_onnx().defs.onnx_opset_version())))
    return build_model(
        layout, activations, params, dtype=name, opset=version, loss=_loss_name(loss), preprocessing=preprocessing
    )


def write_onnx(path: str | os.PathLike[str], layout: Layout, activations: Sequence[str], params: np.ndarray,
               **kwargs: Any) -> None:  # fmt: skip
    """Write :func:`onnx_model`'s model to ``path`` atomically (the path is checked first).

    Raises
    ------
    ValueError, TypeError
        A path that is a directory or another non-regular file, in a missing folder, or not a
        path; every error of :func:`onnx_model`. Nothing is written then.
    """
    check_output_path(path, "path")
    model = onnx_model(layout, activations, params, **kwargs)
    atomic_write_bytes(path, model.SerializeToString(), "path")


def write_ensemble_onnx(
    path: str | os.PathLike[str],
    layout: Layout,
    activations: Sequence[str],
    params: np.ndarray,
    *,
    dtype: Any,
    opset: Any = None,
    loss: str | Loss | None = None,
    members: Any = False,
) -> None:
    """Write an ensemble's model (:mod:`flatnet_xp.export._ensemble`) to ``path`` atomically.

    Raises
    ------
    ValueError, TypeError
        A bad path, dtype, opset or ``members`` (not a bool); parameters that overflow ``dtype``.
        Nothing is written then.
    """
    from flatnet_xp.export._ensemble import ensemble_model

    if not isinstance(members, bool):
        raise TypeError(f"members: expected a bool, got {type(members).__name__}")
    check_output_path(path, "path")
    require_onnx()
    model = ensemble_model(layout, activations, params, dtype=check_dtype(dtype, "dtype"), opset=check_opset(opset),
                           loss=_loss_name(loss), members=members)  # fmt: skip
    atomic_write_bytes(path, model.SerializeToString(), "path")
