"""What every subcommand shares: the one-line error, the argument types, checks of input and output paths."""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "ArgumentParser",
    "CliError",
    "UsageError",
    "quiet_closed_stdout",
    "check_backend",
    "check_input",
    "check_output",
    "check_output_dir",
    "have_module",
    "int_at_least",
    "number_in",
    "refuse_same_file",
    "strict_int",
]


class CliError(Exception):
    """A mistake (status 2, found before any work) or a failure during the work (status 1).

    ``main`` prints ``flatnet-xp <command>: error: <message>`` on ONE line and returns ``status``.
    """

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


class UsageError(Exception):
    """argparse found a bad command line; ``prog`` is the (sub)command it was parsing."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class ArgumentParser(argparse.ArgumentParser):
    """argparse without the usage block on errors: the error becomes ONE line (``main`` prints it)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, f"{message} (see {self.prog} --help)")


class _ClosedPipeSafe:
    """A text stream that, once its reader has gone (``| head``), drops further output instead of
    raising: the command's real work (a model to write) still happens; what it prints is only a
    report. Other attributes are the wrapped stream's."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._closed_pipe = False

    def _gone(self) -> None:
        self._closed_pipe = True
        try:  # the interpreter's final flush must not fail on the same pipe
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def write(self, text: str) -> int:
        if not self._closed_pipe:
            try:
                return int(self._stream.write(text))
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self._closed_pipe:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._gone()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def quiet_closed_stdout(stream: Any) -> Any:
    """``stream`` wrapped so that a closed pipe on it silences it rather than failing the command."""
    return stream if isinstance(stream, _ClosedPipeSafe) else _ClosedPipeSafe(stream)


# ------------------------------------------------------------------------------------ argument types
def strict_int(text: str) -> int:
    """An integer written with ASCII digits only (``int`` also takes ``1_0`` and ``١٢``).

    Raises
    ------
    ValueError
        Anything else.
    """
    stripped = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", stripped):
        raise ValueError(f"not an integer: {text!r}")
    return int(stripped)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = strict_int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def number_in(low: float, high: float, what: str, include_low: bool = False) -> Callable[[str], float]:
    """An argparse type: a float in ``(low, high)``, or ``[low, high)`` with ``include_low``."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            v = math.nan
        if not ((low <= v if include_low else low < v) and v < high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return v

    parse.__name__ = what
    return parse


# ------------------------------------------------------------------------------------ paths
def check_input(flag: str, path: str, suffixes: tuple[str, ...] | None = None) -> Path:
    """An existing, non-empty, readable regular file (with one of ``suffixes``, lower case, if given)."""
    p = Path(path)
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise CliError(f"{flag} {path}: expected a {' or '.join(suffixes)} file, got {p.suffix or 'no extension'!r}")
    if not p.exists():
        raise CliError(f"{flag} {path}: no such file")
    if p.is_dir():
        raise CliError(f"{flag} {path}: is a directory, not a file")
    if not p.is_file():
        raise CliError(f"{flag} {path}: not a regular file")
    if not os.access(p, os.R_OK):
        raise CliError(f"{flag} {path}: permission denied (not readable)")
    if p.stat().st_size == 0:
        raise CliError(f"{flag} {path}: the file is empty")
    return p


_TORCH_SUFFIXES = (".pt", ".pth")


def _writable_folder(flag: str, path: str, folder: Path) -> None:
    if not folder.exists():
        raise CliError(f"{flag} {path}: the folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise CliError(f"{flag} {path}: {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CliError(f"{flag} {path}: the folder {str(folder)!r} is not writable")


def check_output(flag: str, path: str, *, png: bool = False) -> Path:
    """A file we can (atomically) create or replace: its folder exists and is writable, the path is
    not a folder nor another non-regular file; no PyTorch pickle names; ``.png`` where ``png``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in _TORCH_SUFFIXES:
        raise CliError(
            f"{flag} {path}: flatnet-xp writes safetensors files, not PyTorch pickles ({suffix}); save as "
            ".safetensors, then in Python net = fx.FlatMLP.load(path): net.to_torch() is an nn.Sequential and "
            "net.torch_state_dict() a state_dict for torch.save"
        )
    if png and suffix != ".png":
        raise CliError(f"{flag} {path}: the loss curve is a PNG image; give a name ending in .png")
    if p.is_dir():
        raise CliError(f"{flag} {path}: is a directory; give a file name")
    if p.exists() and not p.is_file():
        raise CliError(f"{flag} {path}: exists and is not a regular file (it would not be replaced)")
    _writable_folder(flag, path, p.parent)
    return p


def check_output_dir(flag: str, path: str) -> Path:
    """A folder we can write into: it exists (and is writable) or can be created under a writable one."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise CliError(f"{flag} {path}: exists and is not a folder")
        if not os.access(p, os.W_OK | os.X_OK):
            raise CliError(f"{flag} {path}: the folder is not writable")
        return p
    ancestor = p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise CliError(f"{flag} {path}: {str(ancestor)!r} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise CliError(f"{flag} {path}: cannot create it, {str(ancestor)!r} is not writable")
    return p


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


_OUTPUT_FLAGS = ("--out", "--plot")


def refuse_same_file(*named: tuple[str, Path | None]) -> None:
    """No two of the named paths (e.g. an output and the data it is made from) may be the same file."""
    paths = [(flag, p) for flag, p in named if p is not None]
    for i, (flag_a, a) in enumerate(paths):
        for flag_b, b in paths[i + 1 :]:
            if _same(a, b):
                why = "it would be overwritten" if flag_b in _OUTPUT_FLAGS else "they must be different files"
                raise CliError(f"{flag_a} and {flag_b} name the same file ({a}); {why}")


# ------------------------------------------------------------------------------------ backends
def check_backend(backend: str, device: str | None) -> Any:
    """Resolve ``--backend``/``--device`` now (before reading data or training) or raise CliError.

    Returns the resolved :class:`flatnet_xp.backends.Backend`.
    """
    from flatnet_xp.backends import get_backend

    if backend in ("numpy", "array_api_strict") and device not in (None, "cpu"):
        gpu = " for a GPU use --backend torch --device cuda, or --backend cupy" if "cuda" in str(device) else ""
        raise CliError(f"--device {device}: the {backend} backend runs on the CPU only;{gpu}".rstrip(";"))
    try:
        return get_backend(backend, device)
    except ImportError as exc:
        raise CliError(f"--backend {backend}: {exc}") from None
    except RuntimeError as exc:
        raise CliError(f"--backend {backend}{f' --device {device}' if device else ''}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise CliError(f"--backend {backend}{f' --device {device}' if device else ''}: {exc}") from None


def have_module(name: str) -> bool:
    """True when ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
