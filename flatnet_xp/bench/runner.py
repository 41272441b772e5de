"""Run the benchmark matrix: warm-up, repeats, medians; records with the environment; plots."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from flatnet_xp.bench.configs import CONFIGS, Config, flops_per_step
from flatnet_xp.bench.environment import describe_environment
from flatnet_xp.bench.impls import (
    Runner,
    epoch_plan,
    flatnet_runner,
    jax_runner,
    seed_loops_runner,
    sklearn_runner,
    torch_runner,
)
from flatnet_xp.bench.peak import GemmPeak
from flatnet_xp.bench.plots import plot_results

__all__ = [
    "Timing",
    "available_backends",
    "crossover",
    "plot_results",
    "ratios",
    "run_benchmarks",
    "scaling",
    "time_runner",
    "write_results",
]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _gpu_available() -> bool:
    if _has("cupy"):
        try:
            import cupy

            return bool(cupy.cuda.runtime.getDeviceCount() > 0)
        except Exception:
            return False
    return False


def _torch_cuda() -> bool:
    if not _has("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _jax_gpu() -> bool:
    """True when JAX sees a GPU (``jax.devices("gpu")``)."""
    if not _has("jax"):
        return False
    import jax

    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


def _flatnet_jax() -> Any:
    """flatnet_xp's JAX backend (default device) when it resolves here, else None.

    Any failure counts as "not available": the backend is new (until it lands, ``get_backend``
    refuses JAX with a ValueError).
    """
    if not _has("jax"):
        return None
    from flatnet_xp.backends import get_backend

    try:
        return get_backend("jax")
    except Exception:
        return None


def available_backends(include_strict: bool = True) -> list[tuple[str, Any]]:
    """``(backend, device)`` pairs of flatnet_xp that can run here (``("jax", None)``: JAX's default device)."""
    out: list[tuple[str, Any]] = [("numpy", None)]
    if include_strict and _has("array_api_strict"):
        out.append(("array_api_strict", None))
    if _has("torch"):
        out.append(("torch", None))
        if _torch_cuda():
            out.append(("torch", "cuda"))
    if _gpu_available():
        out.append(("cupy", None))
    if _flatnet_jax() is not None:
        out.append(("jax", None))
    return out


def _on_gpu(backend: str, device: Any) -> bool:
    if backend == "jax":
        return bool(getattr(_flatnet_jax(), "is_gpu", False))
    return backend == "cupy" or device == "cuda"


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Same thread count for NumPy's BLAS and PyTorch (threadpoolctl where installed)."""
    saved = None
    if _has("torch"):
        import torch

        saved = torch.get_num_threads()
        torch.set_num_threads(n)
    try:
        if _has("threadpoolctl"):
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=n):
                yield
        else:
            yield
    finally:
        if saved is not None:
            import torch

            torch.set_num_threads(saved)


@dataclass(frozen=True)
class Timing:
    """Seconds of the first ``run`` call (compilation included, for JIT runners) and of each timed repeat."""

    first_s: float
    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def compile_s(self) -> float:
        """First call minus a steady-state call of the same steps (clamped at 0: noise)."""
        return max(0.0, self.first_s - self.median)


def time_runner(runner: Runner, steps: int, repeats: int) -> Timing:
    """Time ``runner``: one warm-up call of ``steps`` steps (timed apart), then ``repeats`` timed calls."""
    t0 = time.perf_counter()
    runner.run(steps)
    first = time.perf_counter() - t0
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner.run(steps)
        out.append(time.perf_counter() - t0)
    return Timing(first, out)


def _compile_fields(cfg: Config, runner: Runner, steps: int, timing: Timing) -> dict[str, Any]:
    """``compile_s`` and ``fit10_ms_per_step`` (JIT runners; None otherwise) and ``first_call_s``.

    ``fit10_ms_per_step`` is what a user pays per step for a fresh 10-epoch fit: (compile + 10 epochs)
    over the 10 epochs' steps, an epoch being the batches one ``run`` cycles over.
    """
    out: dict[str, Any] = {"first_call_s": timing.first_s, "compile_s": None, "fit10_ms_per_step": None}
    if runner.jit:
        step_s = timing.median / steps
        fit10_steps = 10 * epoch_plan(cfg, steps)[0]
        out["compile_s"] = timing.compile_s
        out["fit10_ms_per_step"] = (timing.compile_s + fit10_steps * step_s) / fit10_steps * 1e3
    return out


def _record(
    cfg: Config, runner: Runner, steps: int, timing: Timing, peak: float | None, peak_mem: float | None, device: str
) -> dict[str, Any]:
    times = timing.times
    step_s = timing.median / steps
    samples = cfg.batch / step_s
    per_sample = runner.impl == "seed_loops"
    gflops = None if per_sample and cfg.batch > 1 else flops_per_step(cfg) / step_s / 1e9
    return {
        "impl": runner.impl,
        "backend": runner.backend,
        "config": cfg.name,
        "device": device,
        "dtype": cfg.dtype,
        "batch": cfg.batch,
        "sizes": list(cfg.sizes),
        "steps_per_repeat": steps,
        "repeats": len(times),
        "step_ms_median": step_s * 1e3,
        "step_ms_min": min(times) / steps * 1e3,
        "step_ms_max": max(times) / steps * 1e3,
        "samples_per_sec": samples,
        "gflops": gflops,
        "peak_gflops": peak,
        "peak_fraction": (gflops / peak) if gflops is not None and peak else None,
        "peak_mem_mb": None if peak_mem is None else peak_mem / 2**20,
        **_compile_fields(cfg, runner, steps, timing),
        "note": runner.note,
    }


#: ``--quick`` runs networks above this many weights without flatnet_xp on array-api-strict (slow
#: portable path), flatnet_xp on torch and scikit-learn: GEMM-bound there, they time the same BLAS
#: calls as native PyTorch and flatnet_xp on NumPy.
QUICK_BIG_NET = 1_000_000
#: Timed repeats under ``--quick`` (it must finish within 45 s on 2 cores with every implementation).
QUICK_REPEATS = 2


def _jobs(cfg: Config, steps: int, quick: bool, gpu: bool) -> list[tuple[str, Callable[[], Runner]]]:
    """``(label, make_runner)`` of every implementation to time on ``cfg`` here."""
    jobs: list[tuple[str, Callable[[], Runner]]] = []
    big = quick and cfg.n_weights > QUICK_BIG_NET
    for backend, device in available_backends(include_strict=not big):
        if _on_gpu(backend, device) != gpu or (big and backend == "torch"):
            continue
        jobs.append((f"flatnet_xp/{backend}", partial(flatnet_runner, cfg, steps, backend, device)))
    if _has("torch") and (not gpu or _torch_cuda()):
        dev = "cuda" if gpu else "cpu"
        jobs.append((f"torch/{dev}", partial(torch_runner, cfg, steps, dev)))
    if _has("jax") and (not gpu or _jax_gpu()):
        jax_dev = "gpu" if gpu else "cpu"
        jobs.append((f"jax/{jax_dev}", partial(jax_runner, cfg, steps, jax_dev)))
    if not gpu and not big and _has("sklearn"):
        jobs.append(("sklearn", partial(sklearn_runner, cfg, steps)))
    if not gpu and cfg.name == "seed-per-sample":
        jobs.append(("seed_loops", partial(seed_loops_runner, cfg, 60 if quick else steps)))
    return jobs


def _gemm_lib(gpu: bool) -> str | None:
    """The library whose GEMMs define the measured peak: NumPy on CPUs; CuPy, else torch, on GPUs."""
    if not gpu:
        return "numpy"
    if _gpu_available():
        return "cupy"
    return "torch" if _torch_cuda() else None


def run_benchmarks(
    configs: list[str] | None = None,
    *,
    quick: bool = False,
    gpu: bool = False,
    repeats: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run every available implementation on every configuration.

    Parameters
    ----------
    configs : list of str, optional
        Names from :data:`~flatnet_xp.bench.configs.CONFIGS` (default: all).
    quick : bool
        Each configuration's ``quick_steps``, 2 repeats, a shorter GEMM peak measurement.
    gpu : bool
        The GPU implementations instead of the CPU ones.
    repeats, threads : int, optional
        Timed repeats (default 7, quick 2); threads for every implementation (default: all cores).
    progress : bool
        A progress bar, shown only when stderr is a terminal (never cursor codes into a log).
    log : callable, optional
        Receives one line per record; default: print (through the bar when one is shown).

    Returns
    -------
    records : list of dict
        One per (config, impl, backend); see the README for the fields. ``peak_gflops`` and
        ``peak_fraction`` are against the run's final GEMM peak (:mod:`flatnet_xp.bench.peak`).
    environment : dict
        :func:`~flatnet_xp.bench.environment.describe_environment` plus the GEMM peak per dtype,
        what defined it, and every GEMM timed.
    """
    threads = threads or os.cpu_count() or 1
    names = configs or list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise ValueError(f"configs: unknown {unknown}; expected names from {sorted(CONFIGS)}")
    repeats = repeats or (QUICK_REPEATS if quick else 7)
    records: list[dict[str, Any]] = []
    peak = GemmPeak(_gemm_lib(gpu), gpu=gpu, quick=quick)
    plan = [
        (CONFIGS[n], steps, label, make)
        for n in names
        for steps in [CONFIGS[n].quick_steps if quick else CONFIGS[n].steps]
        for label, make in _jobs(CONFIGS[n], steps, quick, gpu)
    ]
    if not plan:
        raise RuntimeError("--gpu: nothing runs on a GPU here (no CuPy GPU, no torch CUDA, no JAX GPU)")
    with _threads(threads):
        env = describe_environment(threads)
        device = (env["gpu"] or {}).get("name", "GPU") if gpu else env["cpu"]
        bar = _bar(len(plan), progress)
        say = log or (bar.write if bar is not None else print)
        of_dtype = {c.dtype: [CONFIGS[n] for n in names if CONFIGS[n].dtype == c.dtype] for c, *_ in plan}
        measured: set[str] = set()
        for cfg, steps, label, make in plan:
            if cfg.dtype not in measured:
                measured.add(cfg.dtype)
                peak.measure(cfg.dtype, of_dtype[cfg.dtype])
                say(_peak_line(peak, cfg.dtype, threads))
            if bar is not None:
                bar.set_description(f"{cfg.name}: {label}")
            runner = make()
            timing = time_runner(runner, steps, repeats)
            mem = runner.peak_mem(max(1, steps // 4))
            rec = _record(cfg, runner, steps, timing, peak.value(cfg.dtype), mem, device)
            records.append(rec)
            if bar is not None:
                bar.update(1)
            say(_line(rec))
        if bar is not None:
            bar.close()
        if not quick:
            for dtype, cfgs in of_dtype.items():
                peak.measure(dtype, cfgs, when="after")
    for src in peak.raise_to_records(records):
        (log or print)(
            f"GEMM peak ({src.dtype}) raised to {src.gflops:.1f} GFLOP/s by the {src.what} "
            "(results.json and the plots use the final peak)"
        )
    env.update(peak.describe())
    return records, env


def _bar(total: int, enabled: bool) -> Any:
    """A tqdm bar on stderr when ``enabled`` and stderr is a terminal (and tqdm is installed), else None."""
    from flatnet_xp.training.run import progress_wanted

    if not (enabled and progress_wanted(None)):
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="run", leave=False, file=sys.stderr)


def _peak_line(peak: GemmPeak, dtype: str, threads: int) -> str:
    src = peak.best.get(dtype)
    if src is None:
        return f"GEMM peak ({dtype}): no GEMM timed on this device; records will define it"
    return f"GEMM peak ({dtype}, {threads} threads): {src.gflops:.1f} GFLOP/s, from {src.what}"


def _line(rec: dict[str, Any]) -> str:
    g = "" if rec["gflops"] is None else f"  {rec['gflops']:8.2f} GFLOP/s"
    f = "" if rec["peak_fraction"] is None else f"  {100 * rec['peak_fraction']:5.1f}% of peak"
    c = (
        ""
        if rec["compile_s"] is None
        else f"  compile {rec['compile_s']:.2f} s, 10-epoch fit {rec['fit10_ms_per_step']:.4f} ms/step"
    )
    return (
        f"{rec['config']:<26} {rec['impl']:<11} {rec['backend'] or '':<17} "
        f"{rec['step_ms_median']:9.4f} ms/step  {rec['samples_per_sec']:12.0f} samples/s{g}{f}{c}"
    )


def _find(rows: list[dict[str, Any]], impl: str, backends: tuple[str, ...] | None = None) -> dict[str, Any] | None:
    return next((r for r in rows if r["impl"] == impl and (backends is None or r["backend"] in backends)), None)


def ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed-ups (median step-time ratios, > 1: ``ours`` is faster) per configuration.

    flatnet_xp on NumPy (CuPy on GPUs) against every other implementation; flatnet_xp on its JAX
    backend against flatnet_xp on NumPy (CuPy) and against the hand-written JAX peer.
    """
    out = []
    for cfg in dict.fromkeys(r["config"] for r in records):
        rows = [r for r in records if r["config"] == cfg]
        base = _find(rows, "flatnet_xp", ("numpy", "cupy"))
        fx_jax = _find(rows, "flatnet_xp", ("jax",))
        pairs = [(base, r) for r in rows if base is not None and r is not base and r is not fx_jax]
        pairs += [(fx_jax, r) for r in (base, _find(rows, "jax")) if fx_jax is not None and r is not None]
        out += [
            {
                "config": cfg,
                "ours": f"{ours['impl']}/{ours['backend']}",
                "versus": f"{r['impl']}/{r['backend']}",
                "speedup": r["step_ms_median"] / ours["step_ms_median"],
            }
            for ours, r in pairs
            if ours is not None
        ]
    return out


def scaling(quick: bool, threads: int, gpu: bool = False) -> list[dict[str, Any]]:
    """Step time against width (``[w, w, w, w]``, batch 128) and batch size (``[784, 256, 256, 10]``)."""
    widths = (64, 256, 1024) if quick else (64, 128, 256, 512, 1024, 2048)
    batches = (1, 16, 256) if quick else (1, 4, 16, 64, 256, 1024)
    base = CONFIGS["mnist-784-256-256-10"]
    cases = [
        ("width", w, Config(f"width-{w}", (w, w, w, w), "relu", "identity", "mse", 128, "float32", 5, 3))
        for w in widths
    ]
    cases += [
        (
            "batch",
            b,
            Config(
                f"batch-{b}",
                base.sizes,
                "relu",
                "identity",
                "cross_entropy",
                b,
                "float32",
                max(3, 512 // b),
                max(2, 128 // b),
            ),
        )
        for b in batches
    ]
    out = []
    with _threads(threads):
        for axis, value, cfg in cases:
            steps = cfg.quick_steps if quick else cfg.steps
            # on a GPU, NumPy too: crossover() needs both to say where the GPU overtakes the CPU
            backends = ("numpy", "cupy") if gpu and _gpu_available() else ("numpy",)
            makers: list[Callable[[], Runner]] = [partial(flatnet_runner, cfg, steps, b) for b in backends]
            if _has("torch") and (not gpu or _torch_cuda()):
                makers.append(partial(torch_runner, cfg, steps, "cuda" if gpu else "cpu"))
            for make in makers:
                runner = make()
                timing = time_runner(runner, steps, 3)
                out.append(
                    {
                        "axis": axis,
                        "value": value,
                        "impl": runner.impl,
                        "backend": runner.backend,
                        "sizes": list(cfg.sizes),
                        "dtype": cfg.dtype,
                        "batch": cfg.batch,
                        "step_ms_median": timing.median / steps * 1e3,
                    }
                )
    return out


def crossover(scale: list[dict[str, Any]]) -> dict[str, Any]:
    """Per axis, the smallest width/batch at which flatnet_xp on cupy steps faster than on numpy."""
    out: dict[str, Any] = {}
    for axis in ("width", "batch"):
        cpu = {r["value"]: r["step_ms_median"] for r in scale if r["axis"] == axis and r["backend"] == "numpy"}
        gpu = {r["value"]: r["step_ms_median"] for r in scale if r["axis"] == axis and r["backend"] == "cupy"}
        faster = sorted(v for v in gpu if v in cpu and gpu[v] < cpu[v])
        out[axis] = faster[0] if faster else None
    return out


def write_results(records: list[dict[str, Any]], env: dict[str, Any], scale: list[dict[str, Any]], out: Path) -> None:
    """``results.json`` (the list of records), ``environment.json``, ``ratios.json``, ``scaling.json``."""
    from flatnet_xp._atomic import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)

    def dump(obj: Any) -> bytes:
        return json.dumps(
            obj, indent=1, default=lambda v: None if isinstance(v, float) and math.isnan(v) else str(v)
        ).encode()

    atomic_write_bytes(out / "results.json", dump(records))
    atomic_write_bytes(out / "environment.json", dump(env))
    atomic_write_bytes(out / "ratios.json", dump(ratios(records)))
    if scale:
        atomic_write_bytes(out / "scaling.json", dump(scale))
