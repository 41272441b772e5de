"""An ensemble's file: ONE safetensors file in :mod:`flatnet_xp.persistence`'s format, kind ``"ensemble"``.

The tensors are ``w`` ``(E, w_len)`` and ``b`` ``(E, b_len)``; the metadata are a model file's
(layer sizes, activations, dtype, loss) plus ``n_models``, with the format version and the SHA-256
of metadata and tensors. Writing is atomic; reading validates everything before any array is made
and executes nothing (safetensors and JSON only). A single network's ``FlatMLP.load`` refuses
ensemble files and :func:`read_ensemble` refuses model files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from flatnet_xp import persistence
from flatnet_xp.layout import Layout

__all__ = ["read_ensemble", "write_ensemble"]


def write_ensemble(
    path: str | os.PathLike[str], flat: np.ndarray, layout: Layout, activations: Sequence[str], dtype_name: str,
    loss_name: str | None,
) -> None:  # fmt: skip
    """Write the ``(E, n_params)`` host parameters ``flat`` atomically to ``path``."""
    host = np.asarray(flat).astype(dtype_name)
    meta = persistence.model_meta("ensemble", layout.sizes, activations, dtype_name, loss_name, None)
    meta["n_models"] = int(host.shape[0])
    w_len = layout.w_len
    persistence.write_file(path, {"w": host[:, :w_len], "b": host[:, w_len:]}, meta, "path")


def read_ensemble(path: str | os.PathLike[str]) -> tuple[dict[str, Any], np.ndarray]:
    """The validated metadata and the ``(E, n_params)`` parameters (the file's dtype) of an ensemble file.

    Raises
    ------
    flatnet_xp.ModelFileError
        Anything but an intact ensemble file of this library's format version.
    """
    meta, tensors = persistence.read_file(path, kinds=("ensemble",))
    return meta, np.concatenate([tensors["w"], tensors["b"]], axis=1)
