"""``flatnet-xp demo``: the command wrapper around :func:`flatnet_xp.demo.run_demo`."""

from __future__ import annotations

import argparse
from typing import Any

from flatnet_xp.backends import BACKENDS
from flatnet_xp.cli._common import CliError, check_backend, check_output, have_module

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="reproduce the seed write-up's loss table and plot the loss curve",
        description="Rebuild the seed's experiment ([50, 5] sigmoid, per-sample SGD, 10 epochs) through "
        "the public API, print the seed's 10 losses beside ours with their relative difference "
        "(must be < 1e-9) and save the loss curve as a PNG.",
    )
    p.add_argument("--backend", default="numpy", choices=sorted(BACKENDS), help="array backend (default numpy)")
    p.add_argument("--device", default=None, help="backend device, e.g. cuda for torch")
    p.add_argument("--plot", default="seed_loss_curve.png", help="PNG path (default %(default)s)")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check the backend and the plot path first, then run the demo (status 1 if not reproduced)."""
    from flatnet_xp.demo import run_demo

    plot = None
    if not args.no_plot:
        plot = check_output("--plot", args.plot, png=True)
        if args.plot != "seed_loss_curve.png" and not have_module("matplotlib"):
            raise CliError("--plot: needs matplotlib: pip install 'flatnet_xp[plot]' (or use --no-plot)")
    check_backend(args.backend, args.device)
    return run_demo(args.backend, None if plot is None else str(plot), args.device)
