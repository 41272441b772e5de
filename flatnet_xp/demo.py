"""``flatnet-xp demo``: reproduce the seed's table through the public API and plot the loss curve."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from flatnet_xp.seed import EPOCHS, N_SAMPLES, SEED_TABLE, run_seed_experiment

__all__ = ["TOLERANCE", "plot_seed_curve", "run_demo"]

#: Largest accepted relative difference between the seed's printed losses and ours.
TOLERANCE = 1e-9


def plot_seed_curve(batch_loss: list[float], table: list[float]) -> Any:
    """Per-step loss and the seed's per-epoch values on a log scale; returns a matplotlib Figure."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(range(1, len(batch_loss) + 1), batch_loss, lw=0.5, alpha=0.6, label="flatnet_xp: every step")
    ends = [N_SAMPLES * (e + 1) for e in range(len(table))]
    ax.plot(ends, table, "o", label="flatnet_xp: last sample of each epoch")
    ax.plot(ends, SEED_TABLE[: len(table)], "x", ms=9, color="k", label="seed write-up")
    ax.set_yscale("log")
    ax.set_xlabel("training step (one sample each)")
    ax.set_ylabel("MSE loss")
    ax.set_title("Seed experiment: [50, 5] sigmoid, per-sample SGD")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return fig


def run_demo(backend: str = "numpy", plot: str | None = "seed_loss_curve.png", device: Any = None) -> int:
    """Print the seed's 10 losses beside ours (repr) with the relative difference; 0 when all agree."""
    t0 = time.perf_counter()
    table, batch_loss = run_seed_experiment(backend, EPOCHS, device)
    elapsed = time.perf_counter() - t0
    print(
        f"Seed experiment: [50, 5] sigmoid, per-sample SGD, {EPOCHS} epochs x {N_SAMPLES} samples, "
        f"backend={backend}, float64"
    )
    print(f"{'epoch':>5}  {'seed write-up':<26}{'flatnet_xp':<26}{'rel. diff':>10}")
    worst = 0.0
    for epoch, (theirs, ours) in enumerate(zip(SEED_TABLE, table, strict=True), 1):
        rel = abs(ours - theirs) / abs(theirs)
        worst = max(worst, rel)
        print(f"{epoch:>5}  {theirs!r:<26}{ours!r:<26}{rel:>10.2e}")
    ok = worst < TOLERANCE
    print(
        f"largest relative difference {worst:.2e} ({'<' if ok else '>='} {TOLERANCE:g}): "
        f"{'reproduced' if ok else 'NOT reproduced'}; training took {elapsed * 1e3:.0f} ms"
    )
    if plot:
        try:
            fig = plot_seed_curve(batch_loss, table)
        except ImportError:
            print("(matplotlib is not installed: pip install 'flatnet_xp[plot]' for the loss-curve PNG)")
        else:
            from flatnet_xp._atomic import save_figure

            save_figure(fig, plot, dpi=120)
            print(f"loss curve written to {Path(plot).resolve()}")
    return 0 if ok else 1
