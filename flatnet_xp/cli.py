"""The ``flatnet-xp`` command: ``demo``, ``bench`` and ``train``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flatnet_xp._compat import BACKENDS

__all__ = ["build_parser", "main"]


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="reproduce the seed write-up's loss table and plot the loss curve",
        description="Rebuild the seed's experiment ([50, 5] sigmoid, per-sample SGD, 10 epochs) through "
        "the public API, print the seed's 10 losses beside ours with their relative difference "
        "(must be < 1e-9) and save the loss curve as a PNG.",
    )
    p.add_argument("--backend", default="numpy", choices=sorted(BACKENDS), help="array backend (default numpy)")
    p.add_argument("--device", default=None, help="backend device, e.g. cuda:0 for torch")
    p.add_argument("--plot", default="seed_loss_curve.png", help="PNG path (default %(default)s)")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flatnet-xp",
        description="Multilayer perceptrons on one flat parameter buffer, on NumPy, CuPy or PyTorch.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,bench,train}")
    _add_demo(sub)
    from flatnet_xp.bench.cli import add_bench_parser
    from flatnet_xp.train_cli import add_train_parser

    add_bench_parser(sub)
    add_train_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from flatnet_xp.demo import run_demo

        return run_demo(args.backend, None if args.no_plot else args.plot, args.device)
    return int(args.run(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
