"""PyTorch: tensors on the CPU or a CUDA device, with torch's ``out=`` kernels."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, ClassVar

import array_api_compat
import numpy as np

from flatnet_xp.backends._base import Backend, import_library
from flatnet_xp.backends._kernels import Ops

__all__ = ["TorchBackend"]

Fn = Callable[..., Any]


@functools.cache
def _ops(torch: Any) -> Ops:
    def binary(fn: Fn) -> Fn:
        def op(a: Any, b: Any, out: Any = None) -> Any:
            return fn(a, b, out=out)

        return op

    def unary(fn: Fn) -> Fn:
        def op(a: Any, out: Any = None) -> Any:
            return fn(a, out=out)

        return op

    def maximum(a: Any, b: Any, out: Any = None) -> Any:
        if not isinstance(b, torch.Tensor):
            return torch.clamp_min(a, b, out=out)
        return torch.maximum(a, b, out=out)

    def sum0(a: Any, out: Any = None) -> Any:
        return torch.sum(a, dim=0, out=out)

    def copy(a: Any, out: Any = None) -> Any:
        return a.clone() if out is None else out.copy_(a)

    def slice_add(a: Any, lo: int, hi: int, v: Any) -> Any:
        a[..., lo:hi].add_(v)
        return a

    def slice_mul(a: Any, lo: int, hi: int, v: Any) -> Any:
        a[..., lo:hi].mul_(v)
        return a

    return Ops(
        matmul=binary(torch.matmul),
        add=binary(torch.add),
        subtract=binary(torch.sub),
        multiply=binary(torch.mul),
        divide=binary(torch.div),
        maximum=maximum,
        sqrt=unary(torch.sqrt),
        mask_mul=binary(torch.mul),
        sum0=sum0,
        total=torch.sum,
        tanh=unary(torch.tanh),
        sigmoid=unary(torch.sigmoid),
        copy=copy,
        iadd=lambda a, b: a.add_(b),
        isub=lambda a, b: a.sub_(b),
        imul=lambda a, b: a.mul_(b),
        slice_add=slice_add,
        slice_mul=slice_mul,
    )


class TorchBackend(Backend):
    """PyTorch tensors on ``"cpu"`` or ``"cuda[:i]"``."""

    name = "torch"
    extra = "torch"
    #: The device used when none is given (the test suite's ``torch-cuda`` run sets "cuda").
    default_device: ClassVar[str] = "cpu"

    @classmethod
    def resolve(cls, device: Any = None) -> TorchBackend:
        torch = import_library("torch", cls.extra)
        try:
            dev = torch.device(cls.default_device if device is None else device)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ValueError(f"device: not a torch device: {device!r} ({exc})") from exc
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(f"device: {device!r} is not available: torch reports no usable CUDA GPU")
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise ValueError(f"device: {device!r} is not available: torch sees {torch.cuda.device_count()} GPU(s)")
        elif dev.type != "cpu":
            raise ValueError(f"device: expected 'cpu' or 'cuda[:i]' for torch, got {device!r}")
        xp = importlib.import_module("array_api_compat.torch")
        return cls(xp, dev, _ops(torch), is_gpu=dev.type != "cpu")

    @classmethod
    def owns(cls, x: Any) -> bool:
        return bool(array_api_compat.is_torch_array(x))

    @classmethod
    def owns_namespace(cls, ns: Any) -> bool:
        return bool(array_api_compat.is_torch_namespace(ns))

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        if isinstance(x, np.ndarray) and not x.flags.writeable:
            # torch.as_tensor shares a NumPy array's memory and warns that it "is not writable"
            # (np.load(mmap_mode="r"), broadcast views): a copy of what is moved, never written to.
            x = np.array(x)
        return super().asarray(x, dtype)

    def synchronize(self) -> None:
        if self.is_gpu:
            import torch

            torch.cuda.synchronize(self.device)
