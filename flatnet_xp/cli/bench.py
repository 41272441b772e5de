"""``flatnet-xp bench``: registers :mod:`flatnet_xp.bench.cli` and checks ``--out`` first."""

from __future__ import annotations

import argparse
from typing import Any

from flatnet_xp.cli._common import check_output_dir

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    from flatnet_xp.bench.cli import add_bench_parser

    add_bench_parser(sub)
    sub.choices["bench"].set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from flatnet_xp.bench.cli import run_bench

    if args.out is not None:
        check_output_dir("--out", args.out)
    # --gpu without anything that runs on a GPU (CuPy, torch CUDA, JAX GPU): the runner says so in
    # one line, exit status 2, before running anything.
    return int(run_bench(args))
