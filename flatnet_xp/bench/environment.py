"""What ran a benchmark: versions, BLAS and its kernel, threads, CPU/GPU, TF32, OpenBLAS variables."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

__all__ = ["cpu_name", "describe_environment"]


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str | None]:
    import importlib.metadata as md

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in (
        "flatnet_xp",
        "numpy",
        "array-api-compat",
        "torch",
        "jax",
        "jaxlib",
        "cupy-cuda12x",
        "cupy-cuda13x",
        "cupy",
        "scikit-learn",
    ):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    # The package itself when it runs from a checkout (PYTHONPATH), where no distribution is installed.
    if out["flatnet_xp"] is None:
        from flatnet_xp import __version__

        out["flatnet_xp"] = __version__ + " (source tree)"
    return out


def _blas() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl not installed: pip install 'flatnet_xp[bench]'"}]
    keep = ("internal_api", "prefix", "version", "num_threads", "threading_layer", "architecture", "filepath")
    return [{k: lib.get(k) for k in keep} for lib in threadpool_info()]


def _gpu() -> dict[str, Any] | None:
    try:
        import torch

        if torch.cuda.is_available():
            return {
                "name": torch.cuda.get_device_name(0),
                "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
                "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32),
            }
    except ImportError:
        pass
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        return {"name": props["name"].decode(), "tf32_matmul": os.environ.get("CUPY_TF32", "0") == "1"}
    except Exception:
        pass
    return _jax_gpu()


def _jax_gpu() -> dict[str, Any] | None:
    """JAX's first GPU and its default matmul precision (``None``: XLA's default, TF32 on Ampere+)."""
    try:
        import jax

        dev = jax.devices("gpu")[0]
        return {
            "name": dev.device_kind,
            "jax_default_matmul_precision": getattr(jax.config, "jax_default_matmul_precision", None),
        }
    except Exception:
        return None


def describe_environment(threads: int) -> dict[str, Any]:
    """Everything a reader needs to know which kernels produced the numbers."""
    env = {
        "cpu": cpu_name(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
        "platform": platform.platform(),
        "versions": _versions(),
        "blas": _blas(),
        "numpy_config_blas": _numpy_blas_name(),
        "env": {
            k: os.environ.get(k)
            for k in (
                "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE",
                "OMP_NUM_THREADS",
                "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS",
            )
        },
        "gpu": _gpu(),
    }
    return env


def _numpy_blas_name() -> str | None:
    try:
        cfg = np.show_config(mode="dicts")
        return str(cfg["Build Dependencies"]["blas"].get("name"))
    except Exception:
        return None
