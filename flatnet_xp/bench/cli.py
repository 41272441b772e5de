"""``flatnet-xp bench``: the cross-backend benchmark from the command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from flatnet_xp.bench.configs import CONFIGS

__all__ = ["add_bench_parser", "run_bench"]


def add_bench_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark flatnet_xp on every backend against PyTorch, JAX, scikit-learn and the seed's loops",
        description="Time training steps (warm-up, repeats, medians) of flatnet_xp on every available backend, "
        "native PyTorch (nn.Sequential + torch.optim.SGD, same threads), a hand-written JAX network (jit-compiled "
        "epochs; compile time reported apart), scikit-learn's MLP and, on the seed network, the seed's own Python "
        "loops; report samples/s, GFLOP/s (6 x batch x weights per step), the fraction of the run's GEMM peak "
        "(the best GEMM rate seen anywhere in the run), and peak memory.",
    )
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats (under 45 s on 2 cores)")
    p.add_argument("--gpu", action="store_true", help="benchmark the GPU backends (cupy, torch CUDA, JAX) instead")
    p.add_argument("--config", action="append", choices=sorted(CONFIGS), help="only these (repeatable)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7, quick 2)")
    p.add_argument("--threads", type=int, default=None, help="threads for every implementation (default: all cores)")
    p.add_argument("--no-scaling", action="store_true", help="skip the width/batch scaling sweep")
    p.add_argument("--out", default=None, help="write results.json, environment.json and PNG plots here")
    p.add_argument(
        "--ensembles",
        action="store_true",
        help="also time FlatEnsemble against a loop of FlatMLP.fit, jax.vmap + lax.scan and torch.func",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (one is shown only when stderr is a terminal)"
    )
    p.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    from flatnet_xp.bench.plots import plot_results
    from flatnet_xp.bench.runner import crossover, ratios, run_benchmarks, scaling, write_results

    if args.repeats is not None and args.repeats < 1:
        print("flatnet-xp bench: error: --repeats: expected an integer >= 1", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print("flatnet-xp bench: error: --threads: expected an integer >= 1", file=sys.stderr)
        return 2
    threads = args.threads or os.cpu_count() or 1
    try:
        records, env = run_benchmarks(
            args.config,
            quick=args.quick,
            gpu=args.gpu,
            repeats=args.repeats,
            threads=threads,
            progress=not args.no_progress,
        )
    except (RuntimeError, ImportError, ValueError) as exc:
        print(f"flatnet-xp bench: error: {exc}", file=sys.stderr)
        return 2
    print(f"\nmachine: {env['cpu']} ({env['cores']} cores, {threads} threads); GPU: {(env['gpu'] or {}).get('name')}")
    for lib in env["blas"]:
        if lib.get("internal_api"):
            print(
                f"BLAS: {lib.get('internal_api')} {lib.get('version')} kernel={lib.get('architecture')} "
                f"threads={lib.get('num_threads')} ({lib.get('prefix')})"
            )
    print(f"OPENBLAS_CORETYPE={env['env']['OPENBLAS_CORETYPE']} OPENBLAS_L2_SIZE={env['env']['OPENBLAS_L2_SIZE']}")
    for dtype, src in env["gemm_peak_source"].items():
        print(f"GEMM peak ({dtype}): {env['gemm_peak_gflops'][dtype]:.1f} GFLOP/s, defined by {src['what']}")
    print("\nspeed-up of flatnet_xp over each peer (median step time ratio, same run):")
    for r in ratios(records):
        print(f"  {r['config']:<26} {r['ours']:<18} vs {r['versus']:<24} {r['speedup']:8.2f}x")
    scale = [] if args.no_scaling else scaling(args.quick, threads, args.gpu)
    if args.gpu and scale:
        cross = crossover(scale)
        env["gpu_overtakes_cpu"] = cross
        print(
            f"\nflatnet_xp on cupy overtakes numpy from width {cross['width']} ([w, w, w, w], batch 128) "
            f"and from batch {cross['batch']} ([784, 256, 256, 10]); None: not within the sweep"
        )
    ensembles = None
    if args.ensembles:
        from flatnet_xp.bench.ensembles import format_row, run_ensemble_benchmarks

        ensembles = run_ensemble_benchmarks(args.repeats or (1 if args.quick else 3), quick=args.quick)
        print("\nensembles (median seconds per epoch; ratios in the same run):")
        for name, row in ensembles.items():
            print("  " + format_row(name, row))
    if args.out:
        out = Path(args.out)
        write_results(records, env, scale, out)
        if ensembles is not None:
            (out / "ensembles.json").write_text(json.dumps(ensembles, indent=1))
        try:
            written = plot_results(records, scale, out)
        except ImportError:
            written = []
            print("(matplotlib is not installed: no plots)")
        print(f"\nresults written to {out / 'results.json'}" + "".join(f", {p}" for p in written))
    return 0
