"""Run under ``mpiexec -n 2`` by tests/test_distributed.py: ``python mpi_worker.py MODE OUTDIR``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

import flatnet_xp as fx
from flatnet_xp.distributed import RemoteRankError

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
mode, out = sys.argv[1], Path(sys.argv[2])

LOCAL_B, N_LOCAL = 4, 22  # 22 = 5 full local batches + a partial one of 2


def shards():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(size, N_LOCAL, 5))
    Y = rng.integers(0, 3, size=(size, N_LOCAL))
    return X, Y


def optimizer(name: str) -> fx.Optimizer:
    return {"sgd": lambda: fx.SGD(lr=0.1, momentum=0.9, nesterov=True), "adam": lambda: fx.Adam(lr=0.02)}[name]()


def result(**values) -> None:
    (out / f"rank{rank}.json").write_text(json.dumps(values))


if mode.startswith("equivalence"):
    opt_name = mode.split("-")[1]
    X, Y = shards()
    net = fx.FlatMLP([5, 8, 3], ["tanh", "identity"], dtype="float64", seed=rank)  # rank 0's weights win
    hist = net.fit(
        X[rank],
        Y[rank],
        epochs=3,
        batch_size=LOCAL_B,
        optimizer=optimizer(opt_name),
        shuffle=False,
        loss="cross_entropy",
        progress=False,
        comm=comm,
    )
    gathered = comm.allgather(net.params)
    result(
        params=net.params.tolist(),
        same_on_all_ranks=all(np.array_equal(g, net.params) for g in gathered),
        loss=hist.loss,
        batch_loss=hist.batch_loss,
    )
elif mode == "shuffle":
    X, Y = shards()
    net = fx.FlatMLP([5, 8, 3], ["tanh", "identity"], dtype="float64", seed=0)
    net.fit(
        X[rank],
        Y[rank],
        epochs=2,
        batch_size=LOCAL_B,
        optimizer=fx.Adam(),
        loss="cross_entropy",
        seed=3,
        progress=False,
        comm=comm,
    )
    gathered = comm.allgather(net.params)
    result(same_on_all_ranks=all(np.array_equal(g, net.params) for g in gathered))
elif mode == "unequal":
    X, Y = shards()
    n = N_LOCAL - rank
    net = fx.FlatMLP([5, 3], "identity", dtype="float64", seed=0)
    try:
        net.fit(
            X[rank][:n],
            Y[rank][:n],
            epochs=1,
            optimizer=fx.SGD(lr=0.1),
            loss="cross_entropy",
            progress=False,
            comm=comm,
        )
        result(error=None)
    except ValueError as exc:
        result(error=str(exc))
elif mode == "failure":
    X, Y = shards()
    net = fx.FlatMLP([5, 3], "identity", dtype="float64", seed=0)

    def explode(net, history):
        if rank == 1 and history.epochs == 2:
            raise RuntimeError("boom on rank 1")

    try:
        net.fit(
            X[rank],
            Y[rank],
            epochs=50,
            optimizer=fx.SGD(lr=0.1),
            loss="cross_entropy",
            progress=False,
            comm=comm,
            callbacks=explode,
        )
        result(error=None)
    except RemoteRankError as exc:
        result(error=f"RemoteRankError: {exc}")
    except RuntimeError as exc:
        result(error=f"RuntimeError: {exc}")
elif mode == "failure-mid-epoch":
    X, Y = shards()
    net = fx.FlatMLP([5, 3], "identity", dtype="float64", seed=0)
    start = net.params.copy()

    def schedule(t):
        if rank == 1 and t == 7:  # raised inside a step, between two of the epoch's collectives
            raise RuntimeError("boom on rank 1 at step 7")
        return 0.1

    try:
        net.fit(X[rank], Y[rank], epochs=5, batch_size=2, optimizer=fx.SGD(lr=schedule), loss="cross_entropy",
                shuffle=False, progress=False, comm=comm)  # fmt: skip
        result(error=None)
    except RemoteRankError as exc:
        result(error=f"RemoteRankError: {exc}", params_finite=bool(np.all(np.isfinite(net.params))),
               restored_epoch_start=bool(np.array_equal(net.params, start)))  # fmt: skip
    except RuntimeError as exc:
        result(error=f"RuntimeError: {exc}")
elif mode == "checkpoint":
    X, Y = shards()
    net = fx.FlatMLP([5, 3], "identity", dtype="float64", seed=0)
    ckpt = out / "ckpt.safetensors"
    net.fit(
        X[rank],
        Y[rank],
        epochs=2,
        optimizer=fx.SGD(lr=0.1),
        loss="cross_entropy",
        progress=False,
        comm=comm,
        checkpoint=ckpt,
    )
    comm.Barrier()
    result(exists=ckpt.exists(), leftovers=sorted(p.name for p in out.iterdir() if p.suffix == ".tmp"))
else:
    raise SystemExit(f"unknown mode {mode}")
