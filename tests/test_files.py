"""File semantics users rely on: permissions, non-regular targets, symlinks, temp files, hostile metadata."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flatnet_xp as fx
from flatnet_xp._atomic import TMP_MARK, atomic_write_bytes
from flatnet_xp.persistence import read_file


def small_net(seed: int = 4) -> fx.FlatMLP:
    return fx.FlatMLP([3, 5, 2], ["tanh", "identity"], dtype="float64", seed=seed)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    values = []

    def set_mask(value: int) -> None:
        values.append(os.umask(value))

    yield set_mask
    os.umask(old)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_the_permissions_open_would_give(tmp_path, umask, mask, expected):
    umask(mask)
    small_net().save(tmp_path / "m.safetensors")
    atomic_write_bytes(tmp_path / "r.json", b"{}")
    assert mode_of(tmp_path / "m.safetensors") == expected
    assert mode_of(tmp_path / "r.json") == expected


def test_replacing_a_file_keeps_its_permissions(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "m.safetensors"
    small_net().save(path)
    os.chmod(path, 0o640)
    small_net(seed=5).save(path)
    assert mode_of(path) == 0o640


@pytest.mark.parametrize("kind", ["directory", "fifo", "device"])
def test_save_never_replaces_something_that_is_not_a_regular_file(tmp_path, kind):
    if kind == "directory":
        target = tmp_path / "d"
        target.mkdir()
        match = "is a directory"
    elif kind == "fifo":
        target = tmp_path / "p"
        os.mkfifo(target)
        match = r"is a FIFO \(named pipe\)"
    else:
        target = Path("/dev/null")
        match = "is a character device"
    before = os.stat(target)
    with pytest.raises(ValueError, match=rf"^path: '{target}' {match}, not a regular file"):
        small_net().save(target)
    after = os.stat(target)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)


def test_a_symlink_is_written_through_to_its_target(tmp_path):
    target = tmp_path / "real.safetensors"
    link = tmp_path / "link.safetensors"
    small_net().save(target)
    link.symlink_to(target)
    small_net(seed=9).save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(fx.FlatMLP.load(target).params, small_net(seed=9).params)


def test_a_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.safetensors"
    link.symlink_to(tmp_path / "new.safetensors")
    small_net().save(link)
    assert link.is_symlink() and (tmp_path / "new.safetensors").is_file()


def test_load_refuses_a_fifo_at_once(tmp_path):
    fifo = tmp_path / "p.safetensors"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    worker = threading.Thread(target=lambda: _catch(outcome, fx.FlatMLP.load, fifo), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "load blocked on a FIFO with no writer"
    assert isinstance(outcome[0], fx.ModelFileError) and "not a regular file" in str(outcome[0])


def _catch(outcome: list[BaseException], fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as exc:
        outcome.append(exc)


@pytest.mark.parametrize("path", ["dir", "/dev/null"])
def test_load_refuses_other_non_regular_files(tmp_path, path):
    target = tmp_path / path if path == "dir" else Path(path)
    target.mkdir(exist_ok=True) if path == "dir" else None
    with pytest.raises(fx.ModelFileError, match="not a regular file"):
        fx.FlatMLP.load(target)


def test_save_refuses_non_finite_parameters_and_writes_nothing(tmp_path):
    net = small_net()
    net.w[2] = np.inf
    with pytest.raises(ValueError, match="save: the network's parameters are not all finite"):
        net.save(tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_errors_name_the_users_path_not_the_temporary_file(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(PermissionError) as info:
            small_net().save(folder / "m.safetensors")
    finally:
        folder.chmod(0o700)
    assert "m.safetensors" in str(info.value) and TMP_MARK not in str(info.value)


def test_a_write_error_names_the_users_path(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device \(writing '.*m.safetensors'\)") as info:
        small_net().save(tmp_path / "m.safetensors")
    assert TMP_MARK not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_of_dead_writers_are_removed_by_the_next_save(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".m.safetensors{TMP_MARK}{dead_pid}-abcd1234"
    live = tmp_path / f".m.safetensors{TMP_MARK}1-abcd1234"  # pid 1 is alive: a concurrent writer
    other = tmp_path / f".other{TMP_MARK}{dead_pid}-abcd1234"
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    small_net().save(tmp_path / "m.safetensors")
    assert not stale.exists() and live.exists() and other.exists()


# ------------------------------------------------------------------ hostile metadata
def _valid_files() -> dict[str, bytes]:
    """The bytes of a valid model file and of a valid checkpoint (with optimizer state, early
    stopping, history and run signature)."""
    import tempfile

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        small_net().save(Path(d) / "m.safetensors")
        X, Y = rng.normal(size=(12, 3)), rng.normal(size=(12, 2))
        small_net().fit(
            X, Y, epochs=2, batch_size=4, optimizer=fx.Adam(), validation_data=(X, Y), patience=3,
            checkpoint=Path(d) / "c.ckpt", progress=False,
        )  # fmt: skip
        return {"model": (Path(d) / "m.safetensors").read_bytes(), "checkpoint": (Path(d) / "c.ckpt").read_bytes()}


def _split(raw: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _with_metadata(raw: bytes, meta_text: str) -> bytes:
    """``raw`` with its flatnet_xp metadata replaced by ``meta_text`` (tensors untouched)."""
    header, data = _split(raw)
    header["__metadata__"]["flatnet_xp"] = meta_text
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


VALID = _valid_files()
VALID_META = {kind: json.loads(_split(raw)[0]["__metadata__"]["flatnet_xp"]) for kind, raw in VALID.items()}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), value=json_values)
def test_fuzzed_metadata_either_loads_or_raises_model_file_error(tmp_path, kind, data, value):
    meta = dict(VALID_META[kind])
    key = data.draw(st.sampled_from([*sorted(meta), "extra"]))
    if isinstance(meta.get(key), dict) and data.draw(st.booleans()):  # one level down: a field of a field
        inner = dict(meta[key])
        inner[data.draw(st.sampled_from([*sorted(inner), "extra"]))] = value
        value = inner
    meta[key] = value
    try:
        text = json.dumps(meta)
    except ValueError:
        return
    path = tmp_path / f"fuzz.{kind}"
    path.write_bytes(_with_metadata(VALID[kind], text))
    with contextlib.suppress(fx.ModelFileError):
        fx.FlatMLP.load(path)
    if kind == "checkpoint":
        from flatnet_xp.persistence import read_checkpoint

        with contextlib.suppress(fx.ModelFileError):
            ckpt = read_checkpoint(path)
            ckpt.history()  # everything a resume reads is usable
            ckpt.differences(ckpt.run)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=json_values)
def test_arbitrary_json_as_metadata_raises_model_file_error(tmp_path, meta):
    try:
        text = json.dumps(meta)
    except ValueError:
        return
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(_with_metadata(VALID["model"], text))
    with pytest.raises(fx.ModelFileError):
        read_file(path)


def test_deeply_nested_metadata_raises_the_documented_error(tmp_path):
    path = tmp_path / "deep.safetensors"
    path.write_bytes(_with_metadata(VALID["model"], "[" * 100_000 + "]" * 100_000))
    with pytest.raises(fx.ModelFileError, match="metadata"):
        fx.FlatMLP.load(path)
    path.write_bytes(_with_metadata(VALID["model"], '{"a": ' * 50 + "1" + "}" * 50))
    with pytest.raises(fx.ModelFileError):
        fx.FlatMLP.load(path)
