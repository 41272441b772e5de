"""Element-wise updates over cache-sized blocks of flat buffers, split across threads (fork-safe).

A NumPy update like ``p -= lr * g`` on a buffer far larger than the caches streams it through
memory once per operation, single-threaded. Done block by block (128K elements), each block's
temporaries stay in cache, and NumPy releases the GIL inside its loops, so contiguous ranges run on
several threads at once. Measured on the 25M-parameter benchmark net (2 cores): a plain SGD step
24 ms -> 9 ms. Small buffers and the other backends (whose libraries are already multithreaded or
run on a GPU) take the whole buffer in one call.

Fork safety: a thread pool's workers do not survive ``fork()``; a child that submitted to the
parent's pool would wait forever. The pool therefore remembers the process that made it, and a
forked child makes its own at its first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["Blocks", "available_threads"]


def available_threads() -> int:
    """Threads for blocked updates: ``FLATNET_XP_THREADS`` if set, else the CPUs this process may use."""
    env = os.environ.get("FLATNET_XP_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Blocks:
    """Runs an element-wise update over blocks of ``[0, n)``, on several threads for large buffers.

    Parameters
    ----------
    n : int
        Length of the flat buffers.
    enabled : bool
        Use blocks and threads (NumPy only); otherwise one call over ``[0, n)``.
    """

    BLOCK = 1 << 17
    MIN_PARALLEL = 1 << 20

    def __init__(self, n: int, enabled: bool) -> None:
        self.n = n
        self.threads = available_threads() if enabled and n >= self.MIN_PARALLEL else 1
        self.blocked = enabled and n > self.BLOCK
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    def _executor(self) -> ThreadPoolExecutor:
        pid = os.getpid()
        if self._pool is None or self._pool_pid != pid:  # none yet, or the parent's (after a fork)
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="flatnet_xp")
            self._pool_pid = pid
        return self._pool

    def run(self, fn: Callable[[int, int, int], None]) -> None:
        """Call ``fn(start, stop, worker)`` over ``[0, n)``: one call, or per block on each worker's range."""
        if not self.blocked:
            fn(0, self.n, 0)
            return
        if self.threads == 1:
            self._range(fn, 0, self.n, 0)
            return
        pool = self._executor()
        per = -(-self.n // self.threads)
        futures = [pool.submit(self._range, fn, w * per, min((w + 1) * per, self.n), w) for w in range(self.threads)]
        for f in futures:
            f.result()

    def _range(self, fn: Callable[[int, int, int], None], lo: int, hi: int, worker: int) -> None:
        for start in range(lo, hi, self.BLOCK):
            fn(start, min(start + self.BLOCK, hi), worker)

    def scratch_size(self) -> int:
        """Elements of scratch each worker needs."""
        return self.BLOCK if self.blocked else self.n

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pool": None, "_pool_pid": 0}

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None and self._pool_pid == os.getpid():
            pool.shutdown(wait=False)
