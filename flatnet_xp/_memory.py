"""Memory checks before allocating: refuse what cannot fit in this machine, naming what to change."""

from __future__ import annotations

import numpy as np

from flatnet_xp.layout import Layout

__all__ = ["available_memory", "check_params_memory", "check_training_memory"]

#: Training buffers below this size are not checked against the machine's available memory.
SMALL_FIT_BYTES = 64 << 20


def available_memory() -> int | None:
    """Bytes this machine can still give (MemAvailable + SwapFree on Linux), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if line.split()[1].isdigit()}
        return info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, IndexError, ValueError):
        return None


def check_params_memory(layout: Layout, dtype_name: str, extra_slots: int, on_gpu: bool) -> None:
    """Refuse, before allocating, parameters and gradients that cannot fit in this machine (host memory)."""
    itemsize = np.dtype(dtype_name).itemsize
    need = 2 * (layout.n_params + extra_slots) * itemsize
    have = None if on_gpu else available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"layer_sizes: {list(layout.sizes)} needs {layout.n_params:,} parameters, "
            f"{need:,} bytes of {dtype_name} parameters and gradients; this machine has {have:,} bytes available"
        )


def check_training_memory(
    layout: Layout,
    dtype_name: str,
    *,
    copies: int,
    grads: int,
    batch_size: int,
    on_gpu: bool,
    copy_itemsize: int | None = None,
    rows_name: str | None = "batch_size",
) -> None:
    """Refuse, before any work, a fit whose buffers cannot fit in this machine's memory.

    ``copies`` flat parameter-sized arrays (optimizer state, snapshots, the best weights; of
    ``copy_itemsize`` bytes per element, the network's dtype by default), ``grads`` gradient
    elements still to allocate, and the activations and deltas of one batch of ``batch_size`` rows.
    """
    itemsize = np.dtype(dtype_name).itemsize
    state = copies * layout.n_params * (copy_itemsize or itemsize) + grads * itemsize
    activations = 2 * batch_size * sum(layout.sizes) * itemsize
    if state + activations < SMALL_FIT_BYTES or on_gpu:
        return  # reading /proc/meminfo costs ~40 us: more than a whole small compiled epoch's overhead
    have = available_memory()
    if have is not None and state + activations > have:
        rows = f" with {rows_name}={batch_size}" if rows_name else f" ({batch_size} rows at a time)"
        smaller = f"a smaller {rows_name} or network" if rows_name else "a smaller network"
        raise ValueError(
            f"layer_sizes{'/' + rows_name if rows_name else ''}: training {list(layout.sizes)}{rows} "
            f"needs about {state + activations:,} bytes ({state:,} for optimizer state, snapshots and "
            f"gradients, {activations:,} for the activations); this machine has {have:,} bytes "
            f"available: use {smaller}"
        )
