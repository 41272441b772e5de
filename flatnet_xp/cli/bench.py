"""``flatnet-xp bench``: registers :mod:`flatnet_xp.bench.cli` and checks ``--gpu`` and ``--out`` first."""

from __future__ import annotations

import argparse
from typing import Any

from flatnet_xp.cli._common import CliError, check_output_dir

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    from flatnet_xp.bench.cli import add_bench_parser

    add_bench_parser(sub)
    sub.choices["bench"].set_defaults(run=run)


def _check_gpu() -> None:
    """``--gpu`` benchmarks CuPy (and torch on CUDA) against the GPU's GEMM peak: CuPy and a GPU are needed."""
    from flatnet_xp._compat import get_backend

    try:
        get_backend("cupy")
    except ImportError:
        raise CliError("--gpu: needs CuPy and a CUDA GPU: pip install 'flatnet_xp[cupy]'") from None
    except RuntimeError as exc:
        raise CliError(f"--gpu: no usable CUDA GPU here ({exc})") from None


def run(args: argparse.Namespace) -> int:
    from flatnet_xp.bench.cli import run_bench

    if args.out is not None:
        check_output_dir("--out", args.out)
    if args.gpu:
        _check_gpu()
    return int(run_bench(args))
