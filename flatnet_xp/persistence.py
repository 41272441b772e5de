"""The file format of models and checkpoints: ONE safetensors file, validated before anything is allocated.

This module turns arrays and metadata into bytes and back; it knows nothing of networks or training
(the network builds itself from what :func:`read_file` returns; training writes and reads its
checkpoints through :func:`write_file` and :func:`read_checkpoint`).

File layout (safetensors): an 8-byte little-endian header length, a JSON header, the raw tensors.
Our header's ``__metadata__["flatnet_xp"]`` holds a JSON document with the format version, the
kind (``model`` or ``checkpoint``), layer sizes, activations, dtype, the loss the model was trained
with, the preprocessing stored with it, the SHA-256 of the canonical metadata and the tensor bytes
and, for checkpoints, the
epoch, the optimizer, the shuffle state, early-stopping state, history, whether the run finished,
and the run's signature (what defines it, so that a resume of a different run is refused).
Ensembles (:mod:`flatnet_xp.ensemble`) use the same format with kinds ``ensemble`` and
``ensemble_checkpoint`` (tensors with one row per member, ``n_models`` in the metadata), which
:func:`read_file` accepts only when asked for them (``kinds=``), so that each reader refuses the
other's files.

Loading never executes code (no pickle) and never allocates from an untrusted size: only regular
files are opened (without blocking), the header length is bounded by :data:`MAX_HEADER_BYTES` and by
the file size, every metadata field is type-checked, every tensor's dtype, shape and byte range must
be exactly what the declared layer sizes imply, the ranges must tile the data section, and the
SHA-256 must match. Every malformed, truncated, foreign or corrupted file raises
:class:`ModelFileError` (a ValueError). Writes are atomic and durable (see :mod:`flatnet_xp._atomic`),
and parameters that are not finite are never written.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flatnet_xp._atomic import atomic_write_bytes
from flatnet_xp._validation import FLOAT_DTYPES, check_layer_sizes
from flatnet_xp.activations import ACTIVATIONS
from flatnet_xp.history import History
from flatnet_xp.layout import Layout
from flatnet_xp.losses import LOSSES, Loss
from flatnet_xp.schedules import ReduceOnPlateau

__all__ = [
    "FINISH_REASONS",
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "Checkpoint",
    "ModelFileError",
    "model_meta",
    "read_checkpoint",
    "read_file",
    "write_file",
]

#: Version of the file format written (the metadata's ``format_version``); ``load`` reads only this one.
FORMAT_VERSION = 1
#: Largest JSON header accepted (ours are a few kB; safetensors itself allows 100 MB).
MAX_HEADER_BYTES = 1 << 20
_ST_DTYPES = {"float32": "F32", "float64": "F64"}
_NP_OF_ST: dict[str, np.dtype[Any]] = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}
#: Why a finished run ended (the checkpoint's ``finished`` field).
FINISH_REASONS = ("completed", "early_stopping", "callback", "schedule")


class ModelFileError(ValueError):
    """A model or checkpoint file is malformed, truncated, foreign, corrupted or inconsistent."""


def _require_safetensors() -> Any:
    try:
        import safetensors.numpy
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("model files need safetensors: pip install 'flatnet_xp[io]'") from exc
    return safetensors.numpy


def _canonical_meta(meta: dict[str, Any]) -> str:
    """The metadata, without its checksum, as canonical JSON (sorted keys, no spaces)."""
    return json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True, separators=(",", ":"))


def _digest(tensors: dict[str, np.ndarray], canonical_meta: str) -> str:
    """SHA-256 of the metadata (canonical JSON) and of every tensor: any changed bit in either shows."""
    h = hashlib.sha256(canonical_meta.encode())
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def write_file(path: Any, tensors: dict[str, np.ndarray], meta: dict[str, Any], name: str) -> None:
    """Write ``tensors`` and ``meta`` (JSON-serialisable) as one safetensors file, atomically, with
    the format version and the SHA-256 of both added; ``name`` is the argument named in errors."""
    st = _require_safetensors()
    meta = {**meta, "format_version": FORMAT_VERSION}
    meta["sha256"] = _digest(tensors, _canonical_meta(meta))
    blob = st.save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata={"flatnet_xp": json.dumps(meta)})
    atomic_write_bytes(path, blob, name)


def _loss_meta(loss: str | Loss | None) -> dict[str, Any] | None:
    if loss is None:
        return None
    if isinstance(loss, str):
        return {"name": loss, "scale": 1.0}
    return {"name": loss.name, "scale": loss.scale}


def model_meta(
    kind: str,
    layer_sizes: Any,
    activations: Any,
    dtype_name: str,
    loss: str | Loss | None,
    preprocessing: dict[str, Any] | None,
) -> dict[str, Any]:
    """The metadata of a network in a file of ``kind`` (``"model"`` or ``"checkpoint"``)."""
    return {
        "kind": kind,
        "layer_sizes": list(layer_sizes),
        "activations": list(activations),
        "dtype": dtype_name,
        "loss": _loss_meta(loss),
        "preprocessing": preprocessing,
    }


# ---------------------------------------------------------------------------------------- reading
def _bad(path: Any, why: str) -> ModelFileError:
    return ModelFileError(f"{path}: not a valid flatnet_xp file: {why}")


def _is_int(v: Any, low: int = 0) -> bool:
    return type(v) is int and v >= low


def _is_number(v: Any) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def _check_json_value(path: Any, value: Any, depth: int = 0) -> None:
    """Only plain JSON (no NaN/inf), nested at most 8 levels: our metadata is never deeper."""
    if depth > 8:
        raise _bad(path, "metadata is nested too deeply")
    if isinstance(value, dict):
        for v in value.values():
            _check_json_value(path, v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_json_value(path, v, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise _bad(path, "metadata holds NaN or infinity")


def _parse_loss(path: Any, raw: Any) -> str | Loss | None:
    if raw is None:
        return None
    name = raw.get("name") if isinstance(raw, dict) else None
    if not (isinstance(name, str) and name in LOSSES and _is_number(raw.get("scale")) and raw["scale"] > 0):
        raise _bad(path, f"malformed loss {raw!r}")
    return raw["name"] if raw["scale"] == 1.0 else LOSSES[raw["name"]].scaled(raw["scale"])


def _parse_meta(
    path: Any, header: dict[str, Any], kinds: tuple[str, ...] = ("model", "checkpoint")
) -> tuple[dict[str, Any], str]:
    """The validated metadata (some fields turned into objects) and its canonical JSON."""
    raw = header.get("__metadata__")
    if not isinstance(raw, dict) or not isinstance(raw.get("flatnet_xp"), str):
        raise _bad(path, "no flatnet_xp metadata (a safetensors file from another program?)")
    try:
        meta = json.loads(raw["flatnet_xp"])
    except (ValueError, RecursionError) as exc:
        raise _bad(path, f"metadata is not JSON ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise _bad(path, "metadata is not a JSON object")
    _check_json_value(path, meta)
    canonical = _canonical_meta(meta)
    if meta.get("format_version") != FORMAT_VERSION:
        raise _bad(path, f"format version {meta.get('format_version')!r}, this library reads {FORMAT_VERSION}")
    if meta.get("kind") not in kinds:
        raise _bad(path, f"kind {meta.get('kind')!r}, expected one of {list(kinds)}")
    if meta["kind"].startswith("ensemble") and not (_is_int(meta.get("n_models"), 1) and meta["n_models"] <= 1 << 24):
        raise _bad(path, f"n_models {meta.get('n_models')!r}")
    if meta["kind"] == "ensemble_checkpoint":
        names = meta.get("optimizer_buffers")
        if not isinstance(names, list) or not all(isinstance(n, str) and n.isidentifier() for n in names):
            raise _bad(path, f"optimizer buffers {names!r}")
        if not isinstance(meta.get("has_best"), bool):
            raise _bad(path, f"has_best {meta.get('has_best')!r}")
    try:
        sizes = check_layer_sizes(meta.get("layer_sizes"))
    except (TypeError, ValueError) as exc:
        raise _bad(path, str(exc)) from None
    if max(sizes) > 1 << 24 or Layout(sizes).n_params > 1 << 40:
        raise _bad(path, f"implausible layer sizes {list(sizes)}")
    acts = meta.get("activations")
    if (
        not isinstance(acts, list)
        or len(acts) != len(sizes) - 1
        or not all(isinstance(a, str) and a in ACTIVATIONS for a in acts)
    ):
        raise _bad(path, f"activations {acts!r} do not fit layer sizes {list(sizes)}")
    if meta.get("dtype") not in FLOAT_DTYPES:
        raise _bad(path, f"dtype {meta.get('dtype')!r}")
    if not isinstance(meta.get("sha256"), str):
        raise _bad(path, "no checksum")
    meta["loss"] = _parse_loss(path, meta.get("loss"))
    prep = meta.get("preprocessing")
    if prep is not None:
        meta["preprocessing"] = _parse_preprocessing(path, prep)
    if meta["kind"] == "checkpoint":
        _parse_checkpoint_meta(path, meta)
    return meta, canonical


def _parse_preprocessing(path: Any, raw: Any) -> Any:
    from flatnet_xp.preprocessing import Preprocessing

    try:
        return Preprocessing.from_dict(raw)
    except (TypeError, ValueError, KeyError) as exc:
        raise _bad(path, f"malformed preprocessing ({exc})") from None


def _parse_checkpoint_meta(path: Any, meta: dict[str, Any]) -> None:
    opt = meta.get("optimizer")
    if not (
        isinstance(opt, dict)
        and isinstance(opt.get("name"), str)
        and _is_int(opt.get("t"))
        and isinstance(opt.get("hyperparameters"), dict)
        and isinstance(opt.get("buffers"), list)
        and all(isinstance(n, str) and n.isidentifier() for n in opt["buffers"])
        and len(set(opt["buffers"])) == len(opt["buffers"])
    ):
        raise _bad(path, f"malformed optimizer entry {opt!r}")
    if not _is_int(meta.get("n_batch_loss")):
        raise _bad(path, f"malformed n_batch_loss {meta.get('n_batch_loss')!r}")
    if not _is_int(meta.get("epoch")):
        raise _bad(path, f"malformed epoch {meta.get('epoch')!r}")
    shuffle = meta.get("shuffle")
    if not (isinstance(shuffle, dict) and _is_int(shuffle.get("entropy"))):
        raise _bad(path, f"malformed shuffle state {shuffle!r}")
    if not isinstance(meta.get("history"), dict):
        raise _bad(path, "malformed history")
    try:
        meta["history"] = History.from_dict({**meta["history"], "batch_loss": []})
    except (TypeError, ValueError) as exc:
        raise _bad(path, f"malformed history ({exc})") from None
    early = meta.get("early_stopping")
    if early is not None and not (
        isinstance(early, dict)
        and (early.get("best") is None or _is_number(early.get("best")))
        and (early.get("best_epoch") is None or _is_int(early.get("best_epoch"), 1))
        and _is_int(early.get("wait"))
    ):
        raise _bad(path, f"malformed early-stopping state {early!r}")
    if meta.get("finished") is not None and meta.get("finished") not in FINISH_REASONS:
        raise _bad(path, f"malformed finished state {meta.get('finished')!r}")
    if not isinstance(meta.get("run"), dict):
        raise _bad(path, "no run signature")
    if type(meta.get("live")) is not bool:
        raise _bad(path, f"malformed live flag {meta.get('live')!r}")
    state = meta.get("schedule_state")
    if state is not None:
        try:
            ReduceOnPlateau(1.0).load_state(state)  # the one stateful schedule: its state's shape
        except ValueError as exc:
            raise _bad(path, str(exc)) from None


def _expected_shapes(meta: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    lay = Layout(meta["layer_sizes"])
    shapes: dict[str, tuple[int, ...]] = {"w": (lay.w_len,), "b": (lay.b_len,)}
    if meta["kind"].startswith("ensemble"):  # one row per member
        e = meta["n_models"]
        shapes = {"w": (e, lay.w_len), "b": (e, lay.b_len)}
        if meta["kind"] == "ensemble_checkpoint":
            shapes.update({f"opt.{name}": (e, lay.n_params) for name in meta["optimizer_buffers"]})
            if meta["has_best"]:
                shapes["best.params"] = (e, lay.n_params)
    if meta["kind"] == "checkpoint":
        for name in meta["optimizer"]["buffers"]:
            shapes[f"opt.{name}"] = (lay.n_params,)
        if meta.get("early_stopping") is not None:
            shapes["early.best_params"] = (lay.n_params,)
        if meta["live"]:
            shapes["live.params"] = (lay.n_params,)
        shapes["history.batch_loss"] = (meta["n_batch_loss"],)
    return shapes


def _check_tensors(path: Any, header: dict[str, Any], meta: dict[str, Any], data_len: int) -> None:
    """Every tensor exactly as the metadata implies, and byte ranges tiling the data section."""
    expected = _expected_shapes(meta)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    if set(entries) != set(expected):
        raise _bad(path, f"tensors {sorted(entries)}, expected {sorted(expected)}")
    ranges = []
    for name, shape in expected.items():
        entry = entries[name]
        if not isinstance(entry, dict):
            raise _bad(path, f"tensor {name!r} entry is not an object")
        dtype = "F64" if name == "history.batch_loss" else _ST_DTYPES[meta["dtype"]]
        if entry.get("dtype") != dtype:
            raise _bad(path, f"tensor {name!r} has dtype {entry.get('dtype')!r}, expected {dtype}")
        if entry.get("shape") != list(shape):
            raise _bad(path, f"tensor {name!r} has shape {entry.get('shape')!r}, expected {list(shape)}")
        offs = entry.get("data_offsets")
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int for o in offs)):
            raise _bad(path, f"tensor {name!r} has malformed data_offsets {offs!r}")
        if offs[1] - offs[0] != int(np.prod(shape)) * _NP_OF_ST[dtype].itemsize:
            raise _bad(path, f"tensor {name!r}: byte range {offs} does not hold shape {list(shape)}")
        ranges.append((offs[0], offs[1]))
    pos = 0
    for start, end in sorted(ranges):
        if start != pos:
            raise _bad(path, "tensor byte ranges overlap or leave gaps")
        pos = end
    if pos != data_len:
        raise _bad(path, f"data section is {data_len} bytes, tensors need {pos} (truncated or padded file)")


def _open_regular(path: Path) -> Any:
    """Open ``path`` for reading without blocking, refusing anything but a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _bad(path, "a loop of symbolic links") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _bad(path, "not a regular file (a directory, device or pipe)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_file(
    path: str | os.PathLike[str], kinds: tuple[str, ...] = ("model", "checkpoint")
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and fully validate a flatnet_xp file of one of ``kinds``: ``(metadata, tensors)`` (NumPy arrays).

    Raises
    ------
    ModelFileError
        For anything but an intact regular file written by this library (same format version).
    FileNotFoundError
        The path does not exist.
    TypeError
        ``path`` is not a path.
    """
    if not isinstance(path, str | os.PathLike) or not isinstance(os.fspath(path), str):
        raise TypeError(f"path: expected a file path (str or os.PathLike), got {type(path).__name__} {path!r}")
    if not os.fspath(path) or "\x00" in os.fspath(path):
        raise ValueError(f"path: expected a file path, got {os.fspath(path)!r}")
    p = Path(path)
    with _open_regular(p) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 8:
            raise _bad(p, f"{size} bytes is too short for a safetensors file")
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > MAX_HEADER_BYTES or n > size - 8:
            raise _bad(p, f"header length {n} exceeds {min(MAX_HEADER_BYTES, size - 8)} bytes")
        raw = fh.read(n)
        try:
            header = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _bad(p, f"header is not JSON ({type(exc).__name__})") from None
        if not isinstance(header, dict):
            raise _bad(p, "header is not a JSON object")
        meta, canonical = _parse_meta(p, header, kinds)
        _check_tensors(p, header, meta, size - 8 - n)
        fh.seek(0)
        blob = fh.read()
    st = _require_safetensors()
    try:
        tensors = st.load(blob)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise _bad(p, f"safetensors could not decode it ({exc})") from None
    if _digest(tensors, canonical) != meta["sha256"]:
        raise _bad(p, "SHA-256 of the metadata and tensor data does not match (the file is corrupted)")
    for name in ("w", "b"):
        if not np.all(np.isfinite(tensors[name])):
            raise _bad(p, f"tensor {name!r} holds NaN or infinity")
    return meta, tensors


@dataclass(frozen=True)
class Checkpoint:
    """A validated checkpoint, read before anything is changed (see :func:`read_checkpoint`)."""

    path: str
    meta: dict[str, Any]
    tensors: dict[str, np.ndarray]

    @property
    def epoch(self) -> int:
        """Epochs already run."""
        return int(self.meta["epoch"])

    @property
    def finished(self) -> str | None:
        """Why the run ended, or None when it can continue."""
        return self.meta["finished"]

    @property
    def run(self) -> dict[str, Any]:
        """The run's signature: what a resume must match (see :meth:`differences`)."""
        return dict(self.meta["run"])

    @property
    def entropy(self) -> int:
        """The shuffle state: the entropy every epoch's order is derived from."""
        return int(self.meta["shuffle"]["entropy"])

    def history(self) -> History:
        """The run's :class:`~flatnet_xp.History` up to the checkpoint's epoch."""
        h = History.from_dict(self.meta["history"].to_dict() | {"batch_loss": []})
        h.batch_loss = self.tensors["history.batch_loss"].tolist()
        return h

    def differences(self, run: dict[str, Any]) -> list[str]:
        """What differs between this checkpoint's run and ``run``: one ``"field: checkpoint A, this
        call B"`` line per differing field (``optimizer.lr``, ``data.X`` ...)."""
        mine, theirs = _canonical(self.run), _canonical(run)
        out = []
        for key in sorted(set(mine) | set(theirs)):
            a, b = mine.get(key), theirs.get(key)
            if a == b or (key == "seed" and b is None):  # no seed given: the checkpoint's shuffle state is used
                continue
            if key == "optimizer" and isinstance(a, dict) and isinstance(b, dict) and a.get("name") == b.get("name"):
                out += [
                    f"optimizer.{k}: checkpoint {a.get(k)!r}, this call {b.get(k)!r}"
                    for k in sorted(a)
                    if a[k] != b.get(k)
                ]
            elif key in ("data", "validation") and (isinstance(a, dict) or isinstance(b, dict)):
                a, b = a or {}, b or {}
                for name in sorted(set(a) | set(b)):
                    x, y = a.get(name), b.get(name)
                    if x == y:
                        continue
                    if (
                        isinstance(x, dict)
                        and isinstance(y, dict)
                        and (x["shape"], x["dtype"]) == (y["shape"], y["dtype"])
                    ):
                        out.append(f"{key}.{name}: the values differ")
                    else:
                        out.append(f"{key}.{name}: checkpoint {_describe_array(x)}, this call {_describe_array(y)}")
            else:
                out.append(f"{key}: checkpoint {_short(a)}, this call {_short(b)}")
        return out


def _describe_array(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "none"
    return f"shape {tuple(entry.get('shape', ()))} {entry.get('dtype')}"


def _short(value: Any) -> str:
    if isinstance(value, dict) and "name" in value:  # an optimizer or a loss
        args = ", ".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"{value['name']}({args})"
    return repr(value)


def _canonical(value: Any) -> Any:
    """JSON round trip, so tuples and lists (and ints and floats) compare as they will in a file."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and validate a checkpoint file without changing anything.

    Raises
    ------
    ModelFileError
        Malformed file, or a model file rather than a checkpoint.
    FileNotFoundError
        The path does not exist.
    """
    meta, tensors = read_file(path)
    if meta["kind"] != "checkpoint":
        raise ModelFileError(f"{path}: is a model file, not a checkpoint (resume needs one written by fit)")
    for name, tensor in tensors.items():
        if name != "history.batch_loss" and not np.all(np.isfinite(tensor)):
            raise ModelFileError(f"{path}: tensor {name!r} holds NaN or infinity")
    return Checkpoint(os.fspath(path), meta, tensors)
