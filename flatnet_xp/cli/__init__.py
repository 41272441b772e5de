"""The ``flatnet-xp`` command: ``train``, ``predict``, ``demo``, ``bench`` and ``export``.

Every mistake is reported as ONE line on stderr, ``flatnet-xp <command>: error: <message>``, with
exit status 2, before any work is done; a failure during the work (training diverged, a disk
full) is one such line with status 1; never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from flatnet_xp.cli._common import ArgumentParser, CliError, UsageError, quiet_closed_stdout

__all__ = ["build_parser", "main"]

_COMMANDS = ("train", "predict", "demo", "bench", "export")


def build_parser() -> ArgumentParser:
    """The argument parser of every subcommand (argparse, with one-line errors)."""
    from flatnet_xp import __version__
    from flatnet_xp.cli import bench, demo, export, predict, train

    parser = ArgumentParser(
        prog="flatnet-xp",
        description="Multilayer perceptrons on one flat parameter buffer, on NumPy, CuPy, PyTorch or JAX.",
    )
    parser.add_argument("--version", action="version", version=f"flatnet_xp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(_COMMANDS) + "}")
    train.add_parser(sub)
    predict.add_parser(sub)
    demo.add_parser(sub)
    bench.add_parser(sub)
    export.add_parser(sub)
    for subparser in sub.choices.values():
        subparser.set_defaults(subparser=subparser)
    return parser


def _print_error(prog: str, message: str) -> None:
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script: run the command and return its exit status (never raises).

    0: success; 1: the work failed (or the demo did not reproduce the seed); 2: a mistake in the
    command line or its files, found before any work; 130: interrupted.
    """
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            args.subparser.error(f"unrecognized arguments: {' '.join(extra)}")
    except UsageError as exc:
        _print_error(exc.prog, str(exc))
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    prog = f"flatnet-xp {args.command}"
    stdout = sys.stdout
    sys.stdout = quiet_closed_stdout(stdout)  # `flatnet-xp train ... | head -1` still writes its model
    try:
        return int(args.run(args))
    except CliError as exc:
        _print_error(prog, str(exc))
        return exc.status
    except KeyboardInterrupt:
        _print_error(prog, "interrupted")
        return 130
    except BrokenPipeError:  # e.g. `flatnet-xp predict ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        if os.environ.get("FLATNET_XP_DEBUG"):
            raise
        _print_error(
            prog,
            f"unexpected {type(exc).__name__}: {exc} (a bug in flatnet_xp: please report it; "
            "set FLATNET_XP_DEBUG=1 to see the traceback)",
        )
        return 1
    finally:
        sys.stdout = stdout


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
