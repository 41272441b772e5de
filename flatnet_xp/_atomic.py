"""Safe file writes: output paths checked before any work, atomic and durable replacement.

Semantics (those of ``open(path, "wb")``, made atomic):

* the path must be a ``str`` or ``os.PathLike`` whose folder exists and is writable; a directory,
  device, FIFO or socket at the path is refused (never replaced), with an error naming the path
  the user gave;
* a symbolic link is written THROUGH: its target is replaced atomically and the link is kept
  (``open()`` follows links too);
* the new file gets the permissions ``open()`` would give: those of the file it replaces, else
  ``0o666`` minus the process umask (``0o644`` under the usual ``022``);
* the data goes to a temporary sibling (``.NAME.flatnet-tmp-PID-RANDOM``), is flushed and fsynced,
  ``os.replace``\\ d over the target and the folder fsynced: a crash at any moment leaves the old
  complete file or the new complete file, never a partial one. Temporary files left by a killed
  writer are recognisable by that name and removed by the next successful write to the same path
  (only those whose process is gone).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["TMP_MARK", "atomic_open", "atomic_write_bytes", "check_output_path", "save_figure"]

#: Marker in the names of temporary files (``.NAME.flatnet-tmp-PID-RANDOM``).
TMP_MARK = ".flatnet-tmp-"

_KINDS = {
    stat.S_IFDIR: "directory",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFIFO: "FIFO (named pipe)",
    stat.S_IFSOCK: "socket",
}


def check_output_path(path: Any, name: str = "path") -> Path:
    """The real file a write to ``path`` will replace, checked before any work is done.

    Raises
    ------
    TypeError
        ``path`` is not a ``str`` or ``os.PathLike`` of str.
    ValueError
        Empty path; missing folder; a directory or another non-regular file at the path.
    PermissionError
        The folder is not writable.
    """
    if not isinstance(path, str | os.PathLike) or not isinstance(os.fspath(path), str):
        raise TypeError(f"{name}: expected a file path (str or os.PathLike), got {type(path).__name__} {path!r}")
    text = os.fspath(path)
    if not text or text.endswith(os.sep) or "\x00" in text:
        raise ValueError(f"{name}: expected a file path, got {text!r}")
    real = Path(os.path.realpath(text))  # symlinks are written through to their target
    if not real.parent.is_dir():
        raise ValueError(f"{name}: the folder of {text!r} ({real.parent}) does not exist")
    limit = _name_max(real.parent)
    if len(os.fsencode(real.name)) > limit:
        raise ValueError(f"{name}: the file name of {text!r} is longer than this file system allows ({limit} bytes)")
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:  # a loop of symbolic links, a component that is not a folder, ...
        raise ValueError(f"{name}: {text!r} cannot be resolved to a file ({exc.strerror})") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "special file")
        raise ValueError(f"{name}: {text!r} is a {kind}, not a regular file; flatnet_xp only replaces regular files")
    if not os.access(real.parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, f"{name}: cannot write into the folder of {text!r}", text)
    return real


def _name_max(folder: Path) -> int:
    """Longest file name (bytes) the folder's file system accepts (255 where it cannot be asked)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # pragma: no cover - platforms without pathconf
        return 255


def _tmp_prefix(target: Path) -> str:
    """``.NAME.flatnet-tmp-``, or for names too long to take the suffix, a digest of the name in
    its place (still recognisable, and still unique per target)."""
    prefix = f".{target.name}{TMP_MARK}"
    if len(os.fsencode(prefix)) + 32 <= _name_max(target.parent):
        return prefix
    return f".{hashlib.sha256(os.fsencode(target.name)).hexdigest()[:32]}{TMP_MARK}"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _remove_stale_temps(target: Path) -> None:
    """Delete temporary files of earlier writes to ``target`` whose writing process is gone."""
    prefix = _tmp_prefix(target)
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid_text = entry.name[len(prefix) :].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _named(exc: OSError, user_path: str) -> OSError:
    """The same kind of OSError, naming the user's path instead of the temporary file."""
    if exc.errno is None:
        return type(exc)(f"{exc} (writing {user_path!r})")
    return type(exc)(exc.errno, f"{exc.strerror} (writing {user_path!r})", user_path)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", name: str = "path") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; on success it atomically becomes ``path``.

    See the module doc for the semantics. A failed write removes its temporary file and keeps the
    old file; errors name ``path`` as the user gave it.
    """
    target = check_output_path(path, name)
    user_path = os.fspath(path)
    tmp = target.parent / f"{_tmp_prefix(target)}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        raise _named(exc, user_path) from None
    try:
        with contextlib.suppress(FileNotFoundError):
            os.fchmod(fd, stat.S_IMODE(os.stat(target).st_mode))  # keep the replaced file's mode
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename in (str(tmp), None):
            raise _named(exc, user_path) from None
        raise
    _fsync_dir(target.parent)
    _remove_stale_temps(target)


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes | Callable[[IO[bytes]], None], name: str = "path"
) -> None:
    """Write ``data`` (bytes, or a function writing to a binary file) to ``path`` atomically."""
    with atomic_open(path, "wb", name) as fh:
        if callable(data):
            data(fh)
        else:
            fh.write(data)


def save_figure(fig: Any, path: str | os.PathLike[str], **kwargs: Any) -> None:
    """Save a matplotlib figure as PNG atomically."""
    atomic_write_bytes(path, lambda fh: fig.savefig(fh, format="png", **kwargs))
