"""The GEMM peak that a benchmark's GFLOP/s are compared with: the best GEMM rate seen anywhere in the run.

Method
------
A record's "% of peak" is only meaningful when no record can exceed the peak, so the peak is the
BEST matrix-multiply rate observed in the run, per dtype, wherever it was observed:

1. Before the first configuration of a dtype runs, :meth:`GemmPeak.measure` times

   * square ``A @ B`` (1024 and 2048 on CPUs, 4096 and 8192 on GPUs), and
   * every GEMM the configurations of that dtype actually run, with the memory layouts the network
     uses (:func:`config_gemms`): per layer, the forward ``(batch x in) @ (in x out)`` (the weight
     is stored ``(out, in)``, so the right operand is a transposed view), the weight gradient
     ``delta.T @ a`` (``(out x batch) @ (batch x in)``, left operand a transposed view) and the
     input gradient ``delta @ W`` (``(batch x out) @ (out x in)``).

   Each GEMM is warmed up once, then timed call by call until it has run at least ``min_repeats``
   times and for at least ``budget_s`` seconds (at most ``max_repeats`` calls); its rate is
   ``2 m k n`` over its FASTEST call. Noise on a shared machine only ever slows a call down, so the
   fastest call is the best estimate of what the hardware can do. Outside ``--quick`` the same GEMMs
   are timed again after the last configuration (a second chance at a quiet machine).
2. After the records are made, :meth:`GemmPeak.raise_to_records` raises the peak of a dtype to any
   record's GFLOP/s above it (an implementation with a better GEMM than the one timed, e.g. PyTorch's
   oneDNN against NumPy's OpenBLAS, or a quiet moment of the machine), and every record's
   ``peak_gflops`` and ``peak_fraction`` are recomputed against the final peak: no record exceeds
   100 %.

:meth:`GemmPeak.describe` says, per dtype, which measurement defined the peak (a timed GEMM, named
by its shape, or a record, named by implementation and configuration); the runner stores it in
``environment.json`` with every GEMM timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flatnet_xp.bench.configs import Config

__all__ = ["Gemm", "GemmPeak", "PeakSource", "config_gemms", "square_gemms", "time_gemm"]


@dataclass(frozen=True)
class Gemm:
    """One matrix product ``A (m x k) @ B (k x n)``.

    Attributes
    ----------
    m, k, n : int
    a_t, b_t : bool
        The operand is a transposed view of a C-contiguous array (as the network's ``W.T`` and
        ``delta.T``), so the BLAS call sees the same transpose flags as in training.
    label : str
        Where the shape comes from, e.g. ``"mnist-784-256-256-10 layer 1 forward"``.
    """

    m: int
    k: int
    n: int
    a_t: bool = False
    b_t: bool = False
    label: str = field(default="", compare=False)

    @property
    def flops(self) -> float:
        """``2 m k n``: one multiply and one add per term."""
        return 2.0 * self.m * self.k * self.n

    def describe(self) -> str:
        """The shape as ``(m x k)[.T] @ (k x n)[.T]`` with its label."""
        a = f"({self.m} x {self.k}){'.T' if self.a_t else ''}"
        b = f"({self.k} x {self.n}){'.T' if self.b_t else ''}"
        return f"{a} @ {b}" + (f" [{self.label}]" if self.label else "")


def square_gemms(gpu: bool) -> list[Gemm]:
    """Square products large enough to reach the BLAS's best rate (bigger on GPUs)."""
    return [Gemm(n, n, n, label=f"square {n}") for n in ((4096, 8192) if gpu else (1024, 2048))]


def config_gemms(cfg: Config) -> list[Gemm]:
    """The three GEMMs of every layer of ``cfg`` with the network's memory layouts (see the module doc)."""
    out = []
    B = cfg.batch
    for i, (n_in, n_out, _) in enumerate(cfg.layers):
        where = f"{cfg.name} layer {i + 1}"
        out += [
            Gemm(B, n_in, n_out, b_t=True, label=f"{where} forward"),
            Gemm(n_out, B, n_in, a_t=True, label=f"{where} weight gradient"),
            Gemm(B, n_out, n_in, label=f"{where} input gradient"),
        ]
    return out


@dataclass(frozen=True)
class _Lib:
    """How to place, multiply and wait on one array library (numpy, cupy or torch on CUDA)."""

    put: Callable[[np.ndarray], Any]
    matmul: Callable[..., Any]
    transpose: Callable[[Any], Any]
    sync: Callable[[], None]


def _lib(name: str) -> _Lib:
    if name == "numpy":
        return _Lib(np.asarray, np.matmul, np.transpose, lambda: None)
    if name == "cupy":
        import cupy

        return _Lib(cupy.asarray, cupy.matmul, cupy.transpose, cupy.cuda.Device().synchronize)
    if name == "torch":
        import torch

        return _Lib(lambda a: torch.as_tensor(a, device="cuda"), torch.matmul, torch.t, torch.cuda.synchronize)
    raise ValueError(f"GEMM library: expected numpy, cupy or torch, got {name!r}")


def _operand(lib: _Lib, rows: int, cols: int, transposed: bool, dtype: str, seed: int) -> Any:
    shape = (cols, rows) if transposed else (rows, cols)
    a = lib.put(np.random.default_rng(seed).random(shape, dtype=getattr(np, dtype)) - 0.5)  # U(-0.5, 0.5)
    return lib.transpose(a) if transposed else a


def time_gemm(
    gemm: Gemm,
    dtype: str,
    lib: str = "numpy",
    *,
    min_repeats: int = 10,
    max_repeats: int = 200,
    budget_s: float = 0.3,
) -> tuple[float, int]:
    """Best GFLOP/s of ``gemm`` (its fastest call) and the number of timed calls.

    Parameters
    ----------
    gemm : Gemm
    dtype : str
    lib : {"numpy", "cupy", "torch"}
        ``torch`` runs on CUDA.
    min_repeats, max_repeats : int
        Timed calls at least / at most.
    budget_s : float
        Keep timing until this much time has been spent (unless ``max_repeats`` is reached first).
    """
    L = _lib(lib)
    a = _operand(L, gemm.m, gemm.k, gemm.a_t, dtype, 0)
    b = _operand(L, gemm.k, gemm.n, gemm.b_t, dtype, 1)
    c = L.put(np.empty((gemm.m, gemm.n), dtype=dtype))
    L.matmul(a, b, out=c)
    L.sync()
    best, spent, calls = float("inf"), 0.0, 0
    while calls < max_repeats and (calls < min_repeats or spent < budget_s):
        t0 = time.perf_counter()
        L.matmul(a, b, out=c)
        L.sync()
        dt = time.perf_counter() - t0
        best, spent, calls = min(best, dt), spent + dt, calls + 1
    return gemm.flops / best / 1e9, calls


@dataclass(frozen=True)
class PeakSource:
    """What defined the peak of ``dtype``: ``kind`` is ``"gemm"`` or ``"record"``; ``what`` names it."""

    dtype: str
    gflops: float
    kind: str
    what: str


class GemmPeak:
    """The best GEMM rate per dtype seen in one run, and what defined it (see the module doc).

    Parameters
    ----------
    lib : {"numpy", "cupy", "torch"} or None
        The library whose GEMMs :meth:`measure` times (``torch``: on CUDA); None times nothing
        (the records alone then define the peak).
    gpu : bool
        Time the GPU-sized square products.
    quick : bool
        Fewer timed calls per GEMM (at least 3 and 0.02 s) instead of at least 10 and 0.3 s.
    """

    def __init__(self, lib: str | None = "numpy", *, gpu: bool = False, quick: bool = False) -> None:
        self.lib, self.gpu = lib, gpu
        self.min_repeats, self.budget_s = (3, 0.02) if quick else (10, 0.3)
        self.best: dict[str, PeakSource] = {}
        self.timed: list[dict[str, Any]] = []

    def offer(self, dtype: str, gflops: float, kind: str, what: str) -> bool:
        """Raise the peak of ``dtype`` to ``gflops`` if that is higher; True when it was raised."""
        current = self.best.get(dtype)
        if current is not None and gflops <= current.gflops:
            return False
        self.best[dtype] = PeakSource(dtype, gflops, kind, what)
        return True

    def measure(self, dtype: str, configs: Iterable[Config], when: str = "before") -> float | None:
        """Time the square GEMMs and every GEMM of ``configs`` in ``dtype``; returns the peak so far.

        ``when`` (e.g. ``"before"``, ``"after"`` the configurations) is kept with each timing.
        """
        if self.lib is None:
            return self.value(dtype)
        seen = set()
        for g in square_gemms(self.gpu) + [g for cfg in configs for g in config_gemms(cfg)]:
            if g in seen:  # same shape and layout from another layer or configuration
                continue
            seen.add(g)
            gflops, calls = time_gemm(g, dtype, self.lib, min_repeats=self.min_repeats, budget_s=self.budget_s)
            self.timed.append({"dtype": dtype, "gemm": g.describe(), "gflops": gflops, "calls": calls, "when": when})
            self.offer(dtype, gflops, "gemm", f"GEMM {g.describe()}, timed {when} the configurations")
        return self.value(dtype)

    def value(self, dtype: str) -> float | None:
        """The peak of ``dtype`` in GFLOP/s, or None when nothing was measured."""
        src = self.best.get(dtype)
        return None if src is None else src.gflops

    def raise_to_records(self, records: list[dict[str, Any]]) -> list[PeakSource]:
        """Raise each dtype's peak to any record's GFLOP/s above it, then recompute every record's
        ``peak_gflops`` and ``peak_fraction`` against the final peaks; returns the raises."""
        raised = []
        for r in records:
            if r.get("gflops") is None:
                continue
            what = f"record {r['impl']}/{r['backend']} on {r['config']}"
            if self.offer(r["dtype"], r["gflops"], "record", what):
                raised.append(self.best[r["dtype"]])
        for r in records:
            peak = self.value(r["dtype"])
            r["peak_gflops"] = peak
            r["peak_fraction"] = r["gflops"] / peak if r.get("gflops") is not None and peak else None
        return raised

    def describe(self) -> dict[str, Any]:
        """For ``environment.json``: the peak per dtype, what defined it, and every GEMM timed."""
        return {
            "gemm_peak_gflops": {d: s.gflops for d, s in self.best.items()},
            "gemm_peak_source": {d: {"kind": s.kind, "what": s.what} for d, s in self.best.items()},
            "gemm_timings": self.timed,
        }
