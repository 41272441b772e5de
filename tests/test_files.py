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
def _file_with_metadata(meta_text: str) -> bytes:
    """A safetensors file with our valid tensors and ``meta_text`` as the flatnet_xp metadata."""
    w, b = small_net().get_params()
    header = {
        "__metadata__": {"flatnet_xp": meta_text},
        "b": {"dtype": "F64", "shape": [b.size], "data_offsets": [0, b.nbytes]},
        "w": {"dtype": "F64", "shape": [w.size], "data_offsets": [b.nbytes, b.nbytes + w.nbytes]},
    }
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b.tobytes() + w.tobytes()


def test_deeply_nested_metadata_raises_the_documented_error(tmp_path):
    path = tmp_path / "deep.safetensors"
    path.write_bytes(_file_with_metadata("[" * 100_000 + "]" * 100_000))
    with pytest.raises(fx.ModelFileError, match="metadata"):
        fx.FlatMLP.load(path)
    path.write_bytes(_file_with_metadata('{"a": ' * 50 + "1" + "}" * 50))
    with pytest.raises(fx.ModelFileError):
        fx.FlatMLP.load(path)


def read_file_meta() -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.safetensors"
        small_net().save(p)
        raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(json.loads(raw[8 : 8 + n])["__metadata__"]["flatnet_xp"])


VALID_META = read_file_meta()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from([*sorted(VALID_META), "extra", "history", "early_stopping"]), value=json_values)
def test_fuzzed_metadata_either_loads_or_raises_model_file_error(tmp_path, key, value):
    meta = dict(VALID_META)
    meta[key] = value
    path = tmp_path / "fuzz.safetensors"
    try:
        text = json.dumps(meta)
    except ValueError:
        return
    path.write_bytes(_file_with_metadata(text))
    with contextlib.suppress(fx.ModelFileError):
        fx.FlatMLP.load(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(meta=json_values)
def test_arbitrary_json_as_metadata_raises_model_file_error(tmp_path, meta):
    path = tmp_path / "fuzz.safetensors"
    try:
        text = json.dumps(meta)
    except ValueError:
        return
    path.write_bytes(_file_with_metadata(text))
    with pytest.raises(fx.ModelFileError):
        read_file(path)
