"""Model files and checkpoints: ONE safetensors file, validated before anything is allocated.

File layout (safetensors): an 8-byte little-endian header length, a JSON header, the raw tensors.
Our header's ``__metadata__["flatnet_xp"]`` holds a JSON document with the format version, the
kind (``model`` or ``checkpoint``), layer sizes, activations, dtype, the SHA-256 of the tensor
bytes and, for checkpoints, the epoch, optimizer, RNG state, early-stopping state and history.

Loading never executes code (no pickle) and never allocates from an untrusted size: the header
length is bounded by :data:`MAX_HEADER_BYTES` and by the file size, every tensor's dtype, shape and
byte range must be exactly what the declared layer sizes imply, the ranges must tile the data
section, and the SHA-256 must match. Every malformed, truncated, foreign or corrupted file raises
:class:`ModelFileError` (a ValueError). Writes are atomic and durable (see :mod:`flatnet_xp._atomic`).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp._atomic import atomic_write_bytes
from flatnet_xp._compat import to_numpy
from flatnet_xp._validation import FLOAT_DTYPES, check_layer_sizes
from flatnet_xp.activations import ACTIVATIONS
from flatnet_xp.history import History
from flatnet_xp.layout import Layout

if TYPE_CHECKING:
    from flatnet_xp.network import FlatMLP
    from flatnet_xp.optim import Optimizer

__all__ = [
    "FORMAT_VERSION",
    "MAX_HEADER_BYTES",
    "ModelFileError",
    "load_model",
    "read_file",
    "restore_checkpoint",
    "save_checkpoint",
    "save_model",
]

FORMAT_VERSION = 1
#: Largest JSON header accepted (ours are a few kB; safetensors itself allows 100 MB).
MAX_HEADER_BYTES = 1 << 20
_ST_DTYPES = {"float32": "F32", "float64": "F64"}
_NP_OF_ST: dict[str, np.dtype[Any]] = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8")}


class ModelFileError(ValueError):
    """A model or checkpoint file is malformed, truncated, foreign, corrupted or inconsistent."""


def _require_safetensors() -> Any:
    try:
        import safetensors.numpy
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("model files need safetensors: pip install 'flatnet_xp[io]'") from exc
    return safetensors.numpy


def _digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def _write(path: str | os.PathLike[str], tensors: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    st = _require_safetensors()
    meta = {**meta, "format_version": FORMAT_VERSION, "sha256": _digest(tensors)}
    blob = st.save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata={"flatnet_xp": json.dumps(meta)})
    atomic_write_bytes(path, blob)


def _net_meta(net: FlatMLP, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "layer_sizes": list(net.layout.sizes),
        "activations": list(net.activations),
        "dtype": net.dtype_name,
    }


def _net_tensors(net: FlatMLP) -> dict[str, np.ndarray]:
    w, b = net.get_params()
    return {"w": w, "b": b}


def save_model(net: FlatMLP, path: str | os.PathLike[str]) -> None:
    """Write ``net`` (architecture, dtype, ``w``, ``b``) to one safetensors file, atomically."""
    _write(path, _net_tensors(net), _net_meta(net, "model"))


# ---------------------------------------------------------------------------------------- reading
def _bad(path: Any, why: str) -> ModelFileError:
    return ModelFileError(f"{path}: not a valid flatnet_xp file: {why}")


def _parse_meta(path: Any, header: dict[str, Any]) -> dict[str, Any]:
    raw = header.get("__metadata__")
    if not isinstance(raw, dict) or not isinstance(raw.get("flatnet_xp"), str):
        raise _bad(path, "no flatnet_xp metadata (a safetensors file from another program?)")
    try:
        meta = json.loads(raw["flatnet_xp"])
    except ValueError as exc:
        raise _bad(path, f"metadata is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise _bad(path, "metadata is not a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise _bad(path, f"format version {meta.get('format_version')!r}, this library reads {FORMAT_VERSION}")
    if meta.get("kind") not in ("model", "checkpoint"):
        raise _bad(path, f"unknown kind {meta.get('kind')!r}")
    try:
        sizes = check_layer_sizes(meta.get("layer_sizes"))
    except (TypeError, ValueError) as exc:
        raise _bad(path, str(exc)) from None
    if max(sizes) > 1 << 24:
        raise _bad(path, f"implausible layer size {max(sizes)}")
    acts = meta.get("activations")
    if not isinstance(acts, list) or len(acts) != len(sizes) - 1 or any(a not in ACTIVATIONS for a in acts):
        raise _bad(path, f"activations {acts!r} do not fit layer sizes {list(sizes)}")
    if meta.get("dtype") not in FLOAT_DTYPES:
        raise _bad(path, f"dtype {meta.get('dtype')!r}")
    if not isinstance(meta.get("sha256"), str):
        raise _bad(path, "no checksum")
    if meta["kind"] == "checkpoint":
        opt = meta.get("optimizer")
        if not (
            isinstance(opt, dict)
            and isinstance(opt.get("buffers"), list)
            and all(isinstance(n, str) and n.isidentifier() for n in opt["buffers"])
        ):
            raise _bad(path, f"malformed optimizer entry {opt!r}")
        if type(meta.get("n_batch_loss")) is not int or meta["n_batch_loss"] < 0:
            raise _bad(path, f"malformed n_batch_loss {meta.get('n_batch_loss')!r}")
        if not isinstance(meta.get("history", {}), dict):
            raise _bad(path, "malformed history")
    return meta


def _expected_shapes(meta: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    lay = Layout(meta["layer_sizes"])
    shapes: dict[str, tuple[int, ...]] = {"w": (lay.w_len,), "b": (lay.b_len,)}
    if meta["kind"] == "checkpoint":
        for name in meta["optimizer"]["buffers"]:
            shapes[f"opt.{name}"] = (lay.n_params,)
        if isinstance(meta.get("early_stopping"), dict):
            shapes["early.best_params"] = (lay.n_params,)
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
        if entry.get("shape") != list(shape) or min(shape) < 0:
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


def read_file(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read and fully validate a flatnet_xp file: ``(metadata, tensors)`` (NumPy arrays).

    Raises
    ------
    ModelFileError
        For anything but an intact file written by this library (same format version).
    FileNotFoundError
        The path does not exist.
    """
    p = Path(path)
    with open(p, "rb") as fh:
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
        meta = _parse_meta(p, header)
        _check_tensors(p, header, meta, size - 8 - n)
        fh.seek(0)
        blob = fh.read()
    st = _require_safetensors()
    try:
        tensors = st.load(blob)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise _bad(p, f"safetensors could not decode it ({exc})") from None
    if _digest(tensors) != meta["sha256"]:
        raise _bad(p, "SHA-256 of the tensor data does not match (the file is corrupted)")
    return meta, tensors


def load_model(
    path: str | os.PathLike[str], backend: Any = None, dtype: str | None = None, device: Any = None
) -> FlatMLP:
    """Read a model (or the model inside a checkpoint) onto ``backend`` (default numpy) and ``dtype``."""
    from flatnet_xp.network import FlatMLP

    meta, tensors = read_file(path)
    net = FlatMLP(
        meta["layer_sizes"],
        meta["activations"],
        backend=backend or "numpy",
        dtype=dtype or meta["dtype"],
        device=device,
    )
    net.set_params(tensors["w"], tensors["b"])
    return net


# ---------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(
    path: str | os.PathLike[str],
    net: FlatMLP,
    optimizer: Optimizer,
    epoch: int,
    shuffle_entropy: int,
    history: History,
    stopper: Any = None,
) -> None:
    """Write model + optimizer state + epoch + shuffle-RNG state + history, atomically.

    The shuffle state is the entropy from which ``fit`` derives every epoch's order
    (``SeedSequence(entropy, spawn_key=(rank, epoch))``), so it is complete for every rank.
    """
    tensors = _net_tensors(net)
    for name, buf in optimizer.state_buffers().items():
        tensors[f"opt.{name}"] = np.array(to_numpy(buf))
    hist = history.to_dict()
    tensors["history.batch_loss"] = np.asarray(hist.pop("batch_loss"), dtype=np.float64)
    meta = _net_meta(net, "checkpoint") | {
        "epoch": epoch,
        "loss": net.loss_,
        "optimizer": {
            "name": optimizer.name,
            "t": optimizer.t,
            "hyperparameters": optimizer.hyperparameters(),
            "buffers": list(optimizer.buffer_names),
        },
        "shuffle": {"entropy": int(shuffle_entropy), "scheme": "SeedSequence(entropy, spawn_key=(rank, epoch))"},
        "history": hist,
        "n_batch_loss": int(tensors["history.batch_loss"].shape[0]),
    }
    if stopper is not None:
        tensors["early.best_params"] = np.array(to_numpy(stopper.best_params))
        meta["early_stopping"] = {
            "best": stopper.best if np.isfinite(stopper.best) else None,
            "best_epoch": stopper.best_epoch,
            "wait": stopper.wait,
        }
    _write(path, tensors, meta)


def restore_checkpoint(
    path: str | os.PathLike[str],
    net: FlatMLP,
    optimizer: Optimizer,
    stopper: Any = None,
) -> tuple[int, History, int]:
    """Restore everything :func:`save_checkpoint` wrote into ``net``, ``optimizer`` and ``stopper``.

    Returns
    -------
    epoch : int
        Number of epochs already run.
    history : History
    shuffle_entropy : int

    Raises
    ------
    ModelFileError
        Malformed file, or not a checkpoint.
    ValueError
        The checkpoint belongs to a different network, dtype or optimizer type.
    """
    meta, tensors = read_file(path)
    if meta["kind"] != "checkpoint":
        raise ModelFileError(f"{path}: is a model file, not a checkpoint (resume needs one written by fit)")
    mine = (list(net.layout.sizes), list(net.activations), net.dtype_name)
    theirs = (meta["layer_sizes"], meta["activations"], meta["dtype"])
    if mine != theirs:
        raise ValueError(f"resume: checkpoint {path} is for network (sizes, activations, dtype) {theirs}, not {mine}")
    opt = meta.get("optimizer")
    if not isinstance(opt, dict) or opt.get("name") != optimizer.name:
        got = opt.get("name") if isinstance(opt, dict) else None
        raise ValueError(f"resume: checkpoint {path} was written with optimizer {got!r}, not {optimizer.name!r}")
    if list(opt.get("buffers", [])) != list(optimizer.buffer_names):
        raise ValueError(
            f"resume: checkpoint optimizer state {opt.get('buffers')} does not fit {optimizer!r} "
            f"(state {list(optimizer.buffer_names)})"
        )
    shuffle = meta.get("shuffle")
    entropy = shuffle.get("entropy") if isinstance(shuffle, dict) else None
    if type(entropy) is not int or entropy < 0:
        raise ModelFileError(f"{path}: malformed shuffle state {shuffle!r}")
    epoch, t = meta.get("epoch"), opt.get("t")
    if type(epoch) is not int or type(t) is not int or epoch < 0 or t < 0:
        raise ModelFileError(f"{path}: malformed epoch {epoch!r} or optimizer step {t!r}")
    try:
        history = History.from_dict({**meta.get("history", {}), "batch_loss": tensors["history.batch_loss"].tolist()})
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path}: malformed history ({exc})") from None
    net.set_params(tensors["w"], tensors["b"])
    optimizer.bind(net)
    be = net._be
    for name in optimizer.buffer_names:
        be.ops.copy(be.asarray(tensors[f"opt.{name}"], dtype=net.dtype), out=optimizer.state[name])
    optimizer.t = t
    early = meta.get("early_stopping")
    if stopper is not None and isinstance(early, dict):
        be.ops.copy(be.asarray(tensors["early.best_params"], dtype=net.dtype), out=stopper.best_params)
        stopper.best = float("inf") if early.get("best") is None else float(early["best"])
        stopper.best_epoch, stopper.wait = early.get("best_epoch"), int(early.get("wait", 0))
    net.loss_ = meta.get("loss")
    return epoch, history, entropy
