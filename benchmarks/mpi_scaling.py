"""Data-parallel step time and communication share at 1 and 2 MPI ranks on this machine.

Driver: ``python benchmarks/mpi_scaling.py`` launches itself under ``mpiexec -n N`` for N = 1, 2
(``--ranks 1 2 4``) and prints one row per N. Each run trains [784, 256, 256, 10] (float32, local
batch 128, SGD) with ``fit(..., comm=COMM_WORLD)`` and, separately, times the one in-place
``Allreduce`` of the flat gradient buffer (P + 4 float32 values) that every step performs.
Needs ``pip install 'flatnet_xp[mpi]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

SIZES = [784, 256, 256, 10]
LOCAL_BATCH, STEPS, REPEATS = 128, 40, 5


def worker() -> None:
    import numpy as np
    from mpi4py import MPI

    import flatnet_xp as fx

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    # One machine shared by the ranks: split the cores between them, or BLAS threads oversubscribe.
    from threadpoolctl import threadpool_limits

    threads = max(1, (os.cpu_count() or 1) // size)
    threadpool_limits(threads)
    rng = np.random.default_rng(rank)
    X = rng.standard_normal((STEPS * LOCAL_BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], size=STEPS * LOCAL_BATCH)
    net = fx.FlatMLP(SIZES, ["relu", "relu", "identity"], dtype="float32", seed=0)
    opt = fx.SGD(lr=1e-3)

    def epoch() -> None:
        net.fit(
            X,
            y,
            epochs=1,
            batch_size=LOCAL_BATCH,
            optimizer=opt,
            loss="cross_entropy",
            shuffle=False,
            progress=False,
            comm=comm,
        )

    epoch()
    step_times = []
    for _ in range(REPEATS):
        comm.Barrier()
        t0 = time.perf_counter()
        epoch()
        step_times.append((time.perf_counter() - t0) / STEPS)
    buf = np.zeros(net.layout.n_params + 4, dtype=np.float32)
    comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    ar_times = []
    for _ in range(50):
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        ar_times.append(time.perf_counter() - t0)
    step, ar = statistics.median(step_times), statistics.median(ar_times)
    if rank == 0:
        print(
            json.dumps(
                {
                    "ranks": size,
                    "params": net.layout.n_params,
                    "bytes_per_step": int(buf.nbytes),
                    "step_ms": step * 1e3,
                    "allreduce_ms": ar * 1e3 if size > 1 else 0.0,
                    "comm_share": (ar / step) if size > 1 else 0.0,
                    "global_samples_per_sec": size * LOCAL_BATCH / step,
                    "mpi": MPI.Get_library_version().splitlines()[0],
                    "blas_threads_per_rank": threads,
                }
            )
        )


def driver(ranks: list[int]) -> int:
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        print("mpiexec not found: pip install 'flatnet_xp[mpi]'", file=sys.stderr)
        return 2
    print(f"{'ranks':>5} {'step ms':>9} {'allreduce ms':>13} {'comm share':>11} {'MB/step':>8} {'samples/s':>10}")
    for n in ranks:
        proc = subprocess.run(
            [mpiexec, "-n", str(n), sys.executable, __file__, "--worker"], capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{r['ranks']:>5} {r['step_ms']:9.3f} {r['allreduce_ms']:13.3f} {100 * r['comm_share']:10.1f}% "
            f"{r['bytes_per_step'] / 1e6:8.2f} {r['global_samples_per_sec']:10.0f}"
        )
    print(f"({r['mpi']}; local batch {LOCAL_BATCH}, {SIZES}, float32; BLAS threads = cores / ranks)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if args.worker:
        worker()
    else:
        sys.exit(driver(args.ranks))
