"""Arrays of any supported library to NumPy, and the namespace of an array (array-api-compat)."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

__all__ = ["array_namespace", "is_strict_array", "to_numpy"]

#: Float dtypes NumPy cannot hold (or not portably), widened exactly to float32 on the way to the host.
_NARROW_FLOATS = ("bfloat16", "float16")


def is_strict_array(x: Any) -> bool:
    """True for array-api-strict arrays."""
    return type(x).__module__.startswith("array_api_strict")


def array_namespace(x: Any) -> Any:
    """The Array API namespace of ``x`` (array-api-compat), or ``None`` for non-arrays."""
    try:
        return array_api_compat.array_namespace(x)
    except TypeError:
        return None


def to_numpy(arr: Any) -> np.ndarray:
    """Copy (or view, where possible) any supported backend array into a NumPy array.

    Parameters
    ----------
    arr : array
        A NumPy, CuPy, PyTorch (any device) or array-api-strict array, a JAX array, or anything
        ``numpy.asarray`` accepts.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype; PyTorch bfloat16/float16 tensors come back as float32 (exactly:
        every such value is a float32 value), which NumPy can hold.

    Raises
    ------
    ValueError
        A PyTorch tensor on the meta device (it has a shape but no values).
    """
    if isinstance(arr, np.ndarray):
        return arr
    if array_api_compat.is_cupy_array(arr):
        return arr.get()
    if array_api_compat.is_torch_array(arr):
        if arr.device.type == "meta":
            raise ValueError(f"a torch tensor of shape {tuple(arr.shape)} on the meta device has no values")
        t = arr.detach()
        if str(t.dtype).rsplit(".", 1)[-1] in _NARROW_FLOATS:
            t = t.float()
        return t.cpu().numpy()
    if is_strict_array(arr):
        return np.asarray(np.from_dlpack(arr))
    return np.asarray(arr)  # JAX arrays, lists, scalars
