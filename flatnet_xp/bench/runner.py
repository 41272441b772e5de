"""Run the benchmark matrix: warm-up, repeats, medians; records with the environment; plots."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from flatnet_xp.bench.configs import CONFIGS, Config, flops_per_step
from flatnet_xp.bench.environment import describe_environment
from flatnet_xp.bench.impls import (
    Runner,
    flatnet_runner,
    gemm_peak,
    seed_loops_runner,
    sklearn_runner,
    torch_runner,
)

__all__ = ["available_backends", "run_benchmarks", "scaling"]


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


def available_backends(include_strict: bool = True) -> list[tuple[str, Any]]:
    """``(backend, device)`` pairs of flatnet_xp that can run here."""
    out: list[tuple[str, Any]] = [("numpy", None)]
    if include_strict and _has("array_api_strict"):
        out.append(("array_api_strict", None))
    if _has("torch"):
        out.append(("torch", None))
        if _torch_cuda():
            out.append(("torch", "cuda"))
    if _gpu_available():
        out.append(("cupy", None))
    return out


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


def time_runner(runner: Runner, steps: int, repeats: int) -> list[float]:
    """Seconds per repeat of ``steps`` steps, after one warm-up repeat."""
    runner.run(steps)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        runner.run(steps)
        out.append(time.perf_counter() - t0)
    return out


def _record(
    cfg: Config, runner: Runner, steps: int, times: list[float], peak: float | None, peak_mem: float | None, device: str
) -> dict[str, Any]:
    med = statistics.median(times)
    step_s = med / steps
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
        "note": runner.note,
    }


def _jobs(cfg: Config, steps: int, quick: bool, gpu: bool) -> list[tuple[str, Callable[[], Runner]]]:
    jobs: list[tuple[str, Callable[[], Runner]]] = []
    for backend, device in available_backends(include_strict=not (quick and cfg.n_weights > 1_000_000)):
        on_gpu = backend == "cupy" or device == "cuda"
        if on_gpu != gpu:
            continue
        jobs.append((f"flatnet_xp/{backend}", partial(flatnet_runner, cfg, steps, backend, device)))
    if _has("torch") and (not gpu or _torch_cuda()):
        dev = "cuda" if gpu else "cpu"
        jobs.append((f"torch/{dev}", lambda: torch_runner(cfg, steps, dev)))
    if not gpu and _has("sklearn"):
        jobs.append(("sklearn", lambda: sklearn_runner(cfg, steps)))
    if not gpu and cfg.name == "seed-per-sample":
        loop_steps = 200 if quick else steps
        jobs.append(("seed_loops", lambda: seed_loops_runner(cfg, loop_steps)))
    return jobs


def run_benchmarks(
    configs: list[str] | None = None,
    *,
    quick: bool = False,
    gpu: bool = False,
    repeats: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run every available implementation on every configuration.

    Returns
    -------
    records : list of dict
        One per (config, impl, backend); see the README for the fields.
    environment : dict
    """
    threads = threads or os.cpu_count() or 1
    names = configs or list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise ValueError(f"configs: unknown {unknown}; expected names from {sorted(CONFIGS)}")
    repeats = repeats or (3 if quick else 7)
    records: list[dict[str, Any]] = []
    with _threads(threads):
        env = describe_environment(threads)
        device = (env["gpu"] or {}).get("name", "GPU") if gpu else env["cpu"]
        peaks: dict[str, float] = {}
        plan = []
        for name in names:
            cfg = CONFIGS[name]
            steps = cfg.quick_steps if quick else cfg.steps
            plan += [(cfg, steps, label, make) for label, make in _jobs(cfg, steps, quick, gpu)]
        bar = _bar(len(plan), progress)
        for cfg, steps, label, make in plan:
            if cfg.dtype not in peaks:
                peaks[cfg.dtype] = gemm_peak(cfg.dtype, "cupy" if gpu else "numpy", repeats=3)
                log(f"GEMM peak ({cfg.dtype}, {threads} threads): {peaks[cfg.dtype]:.1f} GFLOP/s")
            if bar is not None:
                bar.set_description(f"{cfg.name}: {label}")
            runner = make()
            times = time_runner(runner, steps, repeats)
            mem = runner.peak_mem(max(1, steps // 4))
            rec = _record(cfg, runner, steps, times, peaks[cfg.dtype], mem, device)
            records.append(rec)
            if bar is not None:
                bar.update(1)
            log(_line(rec))
        if bar is not None:
            bar.close()
    env["gemm_peak_gflops"] = peaks
    return records, env


def _bar(total: int, enabled: bool) -> Any:
    if not enabled or not _has("tqdm"):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="run", leave=False)


def _line(rec: dict[str, Any]) -> str:
    g = "" if rec["gflops"] is None else f"  {rec['gflops']:8.2f} GFLOP/s"
    f = "" if rec["peak_fraction"] is None else f"  {100 * rec['peak_fraction']:5.1f}% of peak"
    return (
        f"{rec['config']:<26} {rec['impl']:<11} {rec['backend'] or '':<17} "
        f"{rec['step_ms_median']:9.4f} ms/step  {rec['samples_per_sec']:12.0f} samples/s{g}{f}"
    )


def ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """flatnet_xp (numpy, or cupy on GPU) against every other implementation, per configuration."""
    out = []
    for cfg in dict.fromkeys(r["config"] for r in records):
        rows = [r for r in records if r["config"] == cfg]
        ours = next((r for r in rows if r["impl"] == "flatnet_xp" and r["backend"] in ("numpy", "cupy")), None)
        if ours is None:
            continue
        for r in rows:
            if r is ours:
                continue
            out.append(
                {
                    "config": cfg,
                    "ours": f"flatnet_xp/{ours['backend']}",
                    "versus": f"{r['impl']}/{r['backend']}",
                    "speedup": r["step_ms_median"] / ours["step_ms_median"],
                }
            )
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
            makers: list[Callable[[], Runner]] = [partial(flatnet_runner, cfg, steps, "cupy" if gpu else "numpy")]
            if _has("torch"):
                makers.append(partial(torch_runner, cfg, steps, "cuda" if gpu else "cpu"))
            for make in makers:
                runner = make()
                times = time_runner(runner, steps, 3)
                out.append(
                    {
                        "axis": axis,
                        "value": value,
                        "impl": runner.impl,
                        "backend": runner.backend,
                        "step_ms_median": statistics.median(times) / steps * 1e3,
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


def plot_results(records: list[dict[str, Any]], scale: list[dict[str, Any]], out: Path) -> list[Path]:
    """``samples_per_sec.png`` (bars per configuration and implementation) and ``scaling.png``."""
    from matplotlib.figure import Figure

    from flatnet_xp._atomic import save_figure

    written = []
    cfgs = list(dict.fromkeys(r["config"] for r in records))
    fig = Figure(figsize=(4 * len(cfgs), 4.2), layout="constrained")
    for i, cfg in enumerate(cfgs):
        ax = fig.add_subplot(1, len(cfgs), i + 1)
        rows = [r for r in records if r["config"] == cfg]
        labels = [f"{r['impl']}\n{r['backend']}" for r in rows]
        ax.bar(
            range(len(rows)),
            [r["samples_per_sec"] for r in rows],
            color=["C0" if r["impl"] == "flatnet_xp" else "C7" for r in rows],
        )
        ax.set_xticks(range(len(rows)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_title(cfg, fontsize=9)
        ax.set_ylabel("training samples / s" if i == 0 else "")
    save_figure(fig, out / "samples_per_sec.png", dpi=110)
    written.append(out / "samples_per_sec.png")
    if scale:
        fig = Figure(figsize=(10, 4), layout="constrained")
        for i, (axis, xlabel) in enumerate(
            (("width", "width w of [w, w, w, w], batch 128"), ("batch", "batch size, [784, 256, 256, 10]"))
        ):
            ax = fig.add_subplot(1, 2, i + 1)
            for key in dict.fromkeys((r["impl"], r["backend"]) for r in scale if r["axis"] == axis):
                pts = [r for r in scale if r["axis"] == axis and (r["impl"], r["backend"]) == key]
                ax.plot([p["value"] for p in pts], [p["step_ms_median"] for p in pts], "o-", label="/".join(key))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("ms per training step")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        save_figure(fig, out / "scaling.png", dpi=110)
        written.append(out / "scaling.png")
    return written


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
