"""Data-parallel training over MPI: ONE in-place ``Allreduce`` of the flat gradient per step.

Because the whole gradient is one contiguous buffer, a data-parallel step needs exactly one
collective (PyTorch DDP and Horovod bucket or fuse many tensors first). The gradient buffer has
five spare slots behind it (see :attr:`flatnet_xp.params.FlatParams.grad_parent`) that ride along in the same message:

* slot ``P``     the batch loss, averaged for the history;
* slot ``P+1``   a second value (validation accuracy at the end of an epoch);
* slot ``P+2``   a "stop" vote (early stopping or a callback on any rank stops every rank);
* slot ``P+3``   an error flag: a rank that raises keeps joining the collectives with it set until the
  others read it, so every other rank raises :class:`RemoteRankError` instead of waiting forever;
* slot ``P+4``   a "read" marker: how many healthy ranks read the flags after this collective.

Every collective inside the training loop is this same ``Allreduce`` over ``P + 5`` numbers, so a
failing rank's messages always match what the others are waiting in.

Host reads. On CPU the buffer is host memory and the flags are read after every collective. On a GPU
a read is a device-to-host copy that stalls the stream, so a training step reads the flags only
every :data:`SYNC_EVERY_GPU` steps (``FLATNET_XP_SYNC_EVERY`` overrides it); the end-of-epoch
collectives (validation means, the stop vote, the last one) read them anyway. A failing rank keeps
sending error-flagged collectives until one that the others read (its read marker is non-zero), so
the no-hang guarantee holds at any ``N``; the healthy ranks then stop within ``N`` steps, having
applied at most ``N`` steps of the failed rank's zeroed gradient, and the epoch's start is restored.
Per-step host transfers left in a data-parallel GPU step: none besides these flag reads (the staged
transport, used when neither NCCL nor a CUDA-aware MPI is available, copies the gradient through
host memory every step by design).

Use it through ``net.fit(X_local, Y_local, comm=MPI.COMM_WORLD, ...)``: each rank passes its own
shard (all the same length), rank 0's parameters are broadcast first, and every rank then applies
the same optimizer step to the same averaged gradient, so parameters stay identical everywhere.

GPU arrays: with CuPy the gradient goes through NCCL (``cupy.cuda.nccl``, communicator set up
through MPI) when NCCL is available, the fast path on multi-GPU nodes; set
``FLATNET_XP_CUDA_AWARE_MPI=1`` to hand device buffers straight to a CUDA-aware MPI instead;
otherwise (and for torch CUDA) the buffer is staged through pinned host memory. Each rank should
build its network on its own GPU (``device=local_rank``). None of the GPU paths has been run yet:
no GPU machine was available when this was written.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp._random import fresh_entropy
from flatnet_xp.backends import to_numpy

if TYPE_CHECKING:
    from flatnet_xp.params import FlatParams

__all__ = ["SYNC_EVERY_GPU", "DataParallel", "RemoteRankError", "agree", "check_communicator", "is_communicator"]

#: Steps between host reads of the control flags on GPU backends (every step on the CPU).
SYNC_EVERY_GPU = 32
_LOSS, _VALUE, _STOP, _ERROR, _READ = range(5)


class RemoteRankError(RuntimeError):
    """Another rank raised during data-parallel training; this rank stopped too."""


def _sync_every(is_gpu: bool) -> int:
    env = os.environ.get("FLATNET_XP_SYNC_EVERY", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return SYNC_EVERY_GPU if is_gpu else 1


def is_communicator(comm: Any) -> bool:
    """Whether ``comm`` has what data-parallel training uses of an mpi4py communicator."""
    return all(hasattr(comm, a) for a in ("Allreduce", "Bcast", "allgather", "bcast", "Get_rank", "Get_size"))


def check_communicator(comm: Any) -> None:
    """Refuse what is not an mpi4py communicator (``TypeError`` naming ``comm``)."""
    if not is_communicator(comm):
        raise TypeError(f"comm: expected an mpi4py communicator, got {type(comm).__name__}")


def agree(comm: Any, error: BaseException | None, config: dict[str, Any] | None) -> None:
    """Before any collective work, make every rank reach the same verdict on a data-parallel fit.

    One ``allgather`` of (this rank's argument error, its configuration). A rank whose arguments
    were refused re-raises its own error and every other rank raises ``ValueError`` naming it; a
    configuration value that differs between ranks (``epochs``, ``batch_size``, whether there is
    validation data or a checkpoint, the optimizer ...) would make the ranks run different numbers
    of collectives (a hang) or train apart, so every rank raises ``ValueError`` naming each
    differing argument with its value on every rank.
    """
    everyone = comm.allgather((None if error is None else f"{type(error).__name__}: {error}", config))
    if error is not None:
        raise error
    failed = [(r, msg) for r, (msg, _) in enumerate(everyone) if msg is not None]
    if failed:
        shown = "; ".join(f"rank {r}: {msg}" for r, msg in failed)
        raise ValueError(f"comm: fit was refused on another rank, so on every rank ({shown})")
    assert config is not None
    diffs = []
    for key in config:
        values = [c[key] if c is not None else None for _, c in everyone]
        if any(v != values[0] for v in values[1:]):
            diffs.append(f"{key}: {', '.join(f'rank {r}: {v!r}' for r, v in enumerate(values))}")
    if diffs:
        raise ValueError(
            "comm: every rank must call fit with the same arguments (only the data differ; only rank 0 "
            f"writes checkpoints, but every rank passes checkpoint=); these differ: {'; '.join(diffs)}"
        )


class DataParallel:
    """The collective side of ``fit(..., comm=...)`` (see the module doc).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
    params : FlatParams
        The network's parameter state (its gradient buffer's spare slots carry the control values).
    n_local : int
        Number of samples in this rank's shard.
    seed : int or None
        The shuffle seed; rank 0's choice is broadcast so every rank derives its own stream from it.
    """

    def __init__(self, comm: Any, params: FlatParams, n_local: int, seed: int | None) -> None:
        check_communicator(comm)
        self.comm, self.rank, self.size = comm, comm.Get_rank(), comm.Get_size()
        be = params.backend
        signature = (n_local, params.layout.sizes, params.activations, params.dtype_name, be.name)
        everyone = comm.allgather(signature)
        if any(s[1:] != signature[1:] for s in everyone):
            raise ValueError(f"comm: every rank needs the same network; got {[s[1:] for s in everyone]}")
        lengths = [s[0] for s in everyone]
        if len(set(lengths)) != 1:
            raise ValueError(f"X: every rank needs a shard of the same length; shard lengths by rank: {lengths}")
        self.P = params.layout.n_params
        self._be = be
        self._parent = params.grad_parent  # the gradient buffer with its spare slots
        self._head = self._parent[: self.P + 1]  # gradient and loss: averaged after the sum
        self._nccl = _nccl_communicator(comm, be)
        self._mode, self._buf = ("nccl", self._parent) if self._nccl else _transport(be, self._parent)
        self._finished = False
        self.sync_every = _sync_every(be.is_gpu)
        self._count = 0
        self.shuffle_seed = comm.bcast(seed if seed is not None else fresh_entropy(), root=0)
        mode, buf = ("nccl", params.flat) if self._nccl else _transport(be, params.flat)
        self._collective(comm.Bcast, params.flat, mode, buf, root=0)

    def _collective(self, fn: Any, arr: Any, mode: str, buf: Any, **kwargs: Any) -> None:
        """Run ``fn`` in place on ``arr`` through its transport (zero-copy view, device, or staged)."""
        from mpi4py import MPI

        if mode == "nccl":
            _nccl_collective(self._nccl, arr, bcast=fn == self.comm.Bcast)
            return
        args = (buf,) if fn == self.comm.Bcast else (MPI.IN_PLACE, buf)
        if mode == "stage":
            buf[...] = to_numpy(arr)
        elif mode == "device":
            self._be.synchronize()
        fn(*args, **kwargs)
        if mode == "stage":
            arr[...] = self._be.asarray(buf)

    def _allreduce(self, read: bool, error: bool = False) -> None:
        """The one collective; with ``read`` the flags are read (a host sync on GPUs) and a remote
        error raises :class:`RemoteRankError`."""
        from mpi4py import MPI

        parent, P = self._parent, self.P
        parent[P + _ERROR] = 1.0 if error else 0.0
        parent[P + _READ] = 1.0 if read and not error else 0.0
        self._collective(self.comm.Allreduce, parent, self._mode, self._buf, op=MPI.SUM)
        self._count += 1
        if read and not error and float(parent[P + _ERROR]) > 0:
            self._finished = True
            raise RemoteRankError(
                "another MPI rank raised an exception; stopping this rank too (see that rank's error)"
            )

    def allreduce_step(self, loss: Any) -> Any:
        """Sum gradient and loss over ranks and divide by the rank count; returns the mean loss (0-d)."""
        self._parent[self.P + _LOSS] = loss
        self._allreduce(read=(self._count + 1) % self.sync_every == 0)
        self._head *= 1.0 / self.size
        return self._parent[self.P + _LOSS]

    def mean_pair(self, a: float, b: float) -> tuple[float, float]:
        """Mean over ranks of two host numbers (validation loss and accuracy)."""
        self._parent[self.P + _LOSS] = a
        self._parent[self.P + _VALUE] = 0.0 if b != b else b
        self._allreduce(read=True)
        mean_b = float(self._parent[self.P + _VALUE]) / self.size if b == b else b
        return float(self._parent[self.P + _LOSS]) / self.size, mean_b

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank."""
        self._parent[self.P + _STOP] = 1.0 if flag else 0.0
        self._allreduce(read=True)
        return float(self._parent[self.P + _STOP]) > 0

    def finish(self) -> None:
        """The loop's last collective: after it nothing can leave another rank waiting."""
        self._allreduce(read=True)
        self._finished = True

    def fail(self, exc: BaseException) -> None:
        """Tell the other ranks (through the collectives they are waiting in) that this rank failed.

        Keeps joining error-flagged collectives, with a zeroed gradient, until one that a healthy rank
        reads (or until every rank has failed).
        """
        if self._finished or isinstance(exc, RemoteRankError):
            return
        print(f"[flatnet_xp rank {self.rank}] {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        try:
            for _ in range(self.sync_every + 16):
                self._head[...] = 0.0
                self._allreduce(read=False, error=True)
                read = float(self._parent[self.P + _READ]) > 0
                if read or float(self._parent[self.P + _ERROR]) >= self.size:
                    break
        except Exception:  # the communicator itself is broken: nothing left but to abort the job
            self.comm.Abort(1)
        self._finished = True


def _nccl_communicator(comm: Any, be: Any) -> Any:
    """A NCCL communicator over the same ranks for CuPy networks (None elsewhere or when disabled)."""
    if (
        be.name != "cupy"
        or os.environ.get("FLATNET_XP_CUDA_AWARE_MPI") == "1"
        or os.environ.get("FLATNET_XP_NCCL") == "0"
    ):
        return None
    from cupy.cuda import nccl

    if not nccl.available:
        return None
    uid = comm.bcast(nccl.get_unique_id() if comm.Get_rank() == 0 else None, root=0)
    return nccl.NcclCommunicator(comm.Get_size(), uid, comm.Get_rank())


def _nccl_collective(nc: Any, arr: Any, bcast: bool) -> None:
    """In-place NCCL sum (or broadcast from rank 0) of a contiguous CuPy array on the current stream."""
    import cupy
    from cupy.cuda import nccl

    dtype = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}[str(arr.dtype)]
    stream = cupy.cuda.get_current_stream().ptr
    if bcast:
        nc.bcast(arr.data.ptr, arr.size, dtype, 0, stream)
    else:
        nc.allReduce(arr.data.ptr, arr.data.ptr, arr.size, dtype, nccl.NCCL_SUM, stream)


def _transport(be: Any, arr: Any) -> tuple[str, Any]:
    """How MPI reaches ``arr``: ``("view", ndarray sharing its memory)``, ``("device", arr)`` for a
    CUDA-aware MPI, or ``("stage", host buffer)`` (pinned host memory for CuPy)."""
    if isinstance(arr, np.ndarray):
        return "view", arr
    if be.name == "torch" and not be.is_gpu:
        return "view", arr.numpy()  # shares memory with the tensor
    if be.is_gpu and os.environ.get("FLATNET_XP_CUDA_AWARE_MPI") == "1":
        return "device", arr
    n, dtype = int(arr.shape[0]), np.dtype(str(arr.dtype).rsplit(".", 1)[-1])
    if be.name == "cupy":
        import cupy

        mem = cupy.cuda.alloc_pinned_memory(n * dtype.itemsize)
        return "stage", np.frombuffer(mem, dtype, n)
    return "stage", np.empty(n, dtype=dtype)
