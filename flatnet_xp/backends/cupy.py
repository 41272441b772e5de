"""CuPy: NumPy's ufunc kernels on a CUDA GPU."""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

import array_api_compat

from flatnet_xp.backends._base import Backend, import_library
from flatnet_xp.backends.numpy import ufunc_ops

__all__ = ["CuPyBackend"]


class CuPyBackend(Backend):
    """CuPy arrays on one CUDA device (an integer device id, default 0)."""

    name = "cupy"
    extra = "cupy"

    @classmethod
    def resolve(cls, device: Any = None) -> CuPyBackend:
        cupy = import_library("cupy", cls.extra)
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDA driver missing, no device, broken install
            raise RuntimeError(f"backend 'cupy' needs a usable CUDA GPU; CUDA said: {exc}") from exc
        if count < 1:
            raise RuntimeError("backend 'cupy' needs a usable CUDA GPU; none was found")
        if device is not None and (isinstance(device, bool) or not isinstance(device, int) or not 0 <= device < count):
            raise ValueError(f"device: expected a CUDA device index in [0, {count - 1}] for cupy, got {device!r}")
        xp = importlib.import_module("array_api_compat.cupy")
        return cls(xp, cupy.cuda.Device(device or 0), _ops(cupy), is_gpu=True)

    @classmethod
    def owns(cls, x: Any) -> bool:
        return bool(array_api_compat.is_cupy_array(x))

    @classmethod
    def owns_namespace(cls, ns: Any) -> bool:
        return bool(array_api_compat.is_cupy_namespace(ns))

    def synchronize(self) -> None:
        import cupy

        cupy.cuda.get_current_stream().synchronize()


_CACHE: dict[int, Any] = {}


def _ops(cupy: Any) -> Any:
    """One kernel table per process (shared by every CuPy network)."""
    if not _CACHE:
        # CuPy's matmul is a generalized ufunc that takes ``out`` by keyword only (CuPy 14 refuses it
        # by position). Calling cuBLAS's GEMM into ``out`` directly (cupy.cublas.gemm) was measured
        # on an H200 and gained nothing (wide network 1.27 vs 1.27-1.29 ms a step), so it is not used.
        matmul = cupy.matmul
        _CACHE[0] = dataclasses.replace(ufunc_ops(cupy), matmul=lambda a, b, out=None: matmul(a, b, out=out))
    return _CACHE[0]
