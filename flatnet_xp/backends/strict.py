"""array-api-strict: the Array API standard and nothing else (the proof that the portable path is portable)."""

from __future__ import annotations

import functools
from typing import Any

import array_api_compat

from flatnet_xp.backends._base import Backend, import_library
from flatnet_xp.backends._convert import is_strict_array
from flatnet_xp.backends._kernels import Ops, portable_ops

__all__ = ["StrictBackend"]


@functools.cache
def _ops(xp: Any) -> Ops:
    return portable_ops(xp)


class StrictBackend(Backend):
    """array-api-strict arrays on one of its (virtual) devices."""

    name = "array_api_strict"
    extra = "test"

    @classmethod
    def resolve(cls, device: Any = None) -> StrictBackend:
        native = import_library("array_api_strict", cls.extra)
        devices = native.__array_namespace_info__().devices()
        if device is not None and device not in devices:
            raise ValueError(f"device: expected one of array_api_strict's devices {list(devices)}, got {device!r}")
        return cls(native, native.Device() if device is None else device, _ops(native))

    @classmethod
    def owns(cls, x: Any) -> bool:
        return is_strict_array(x)

    @classmethod
    def owns_namespace(cls, ns: Any) -> bool:
        return bool(array_api_compat.is_array_api_strict_namespace(ns))
