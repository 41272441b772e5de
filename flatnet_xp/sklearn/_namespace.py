"""Which backend an estimator trains on and which array namespace it answers in.

scikit-learn's convention: with ``sklearn.config_context(array_api_dispatch=True)`` an estimator
fitted on arrays of some namespace (PyTorch, CuPy, JAX, array-api-strict) computes in that
namespace, on that device, and returns arrays of it; with dispatch off every input is converted to
NumPy. ``backend="auto"`` follows that convention; an explicit backend trains there whatever the
input, and the results still come back in the input's namespace. Device arrays that NumPy cannot
take (CuPy, torch on CUDA) are used as they are even with dispatch off.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
from sklearn import get_config

from flatnet_xp._validation import is_sparse
from flatnet_xp.backends import array_namespace, to_numpy

__all__ = ["auto_backend", "dispatching", "is_device_array", "is_host_input", "like_input"]


def dispatching() -> bool:
    """True inside ``sklearn.config_context(array_api_dispatch=True)``."""
    return bool(get_config().get("array_api_dispatch", False))


def is_device_array(X: Any) -> bool:
    """Arrays in accelerator memory that ``numpy.asarray`` refuses (CuPy, torch on CUDA)."""
    return array_api_compat.is_cupy_array(X) or (
        array_api_compat.is_torch_array(X) and getattr(X, "device", None) is not None and X.device.type != "cpu"
    )


def is_host_input(X: Any) -> bool:
    """NumPy arrays and scipy.sparse matrices: inputs answered with NumPy arrays."""
    return isinstance(X, np.ndarray) or is_sparse(X)


def auto_backend(X: Any) -> tuple[Any, Any]:
    """``(backend, device)`` for ``FlatMLP`` that computes where the validated ``X`` lives."""
    if is_host_input(X):
        return "numpy", None
    device = array_api_compat.device(X)
    if array_api_compat.is_cupy_array(X):
        device = device.id  # FlatMLP takes CuPy devices by index
    return array_namespace(X), device


def like_input(result: Any, X: Any) -> Any:
    """``result`` (an array of the network's backend) in the namespace and on the device of ``X``."""
    if is_host_input(X):
        return np.asarray(to_numpy(result))
    xp = array_namespace(X)
    device = array_api_compat.device(X)
    if array_namespace(result) is xp and array_api_compat.device(result) == device:
        return result
    return xp.asarray(to_numpy(result), device=device)
