"""Model files, checkpoints and exact resume: safe to read, atomic to write, bit-identical to continue."""

from __future__ import annotations

import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flatnet_xp as fx
from flatnet_xp.backends import to_numpy
from flatnet_xp.persistence import MAX_HEADER_BYTES, read_file
from tests.conftest import assert_close

ROOT = Path(__file__).resolve().parents[1]


def small_net(backend: str = "numpy", dtype: str = "float64") -> fx.FlatMLP:
    return fx.FlatMLP([3, 5, 2], ["tanh", "identity"], backend=backend, dtype=dtype, seed=4)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    small_net().save(path)
    return path


def test_save_then_load_on_every_backend(xp, tmp_path):
    net = small_net()
    path = tmp_path / "m.safetensors"
    net.save(path)
    back = fx.FlatMLP.load(path, backend=xp)
    assert back.backend == xp and back.layout == net.layout and back.activations == net.activations
    assert_close(back.params, net.params, rtol=0)  # bit-exact weights
    X = np.random.default_rng(0).normal(size=(4, 3))
    assert_close(back.forward(X), net.forward(X), rtol=1e-13)


def test_load_can_change_dtype(model_file):
    net = fx.FlatMLP.load(model_file, dtype="float32")
    assert net.dtype_name == "float32"
    assert_close(net.params, small_net().params.astype(np.float32), rtol=0)


def test_the_file_is_plain_safetensors_with_our_metadata(model_file):
    from safetensors.numpy import load_file

    tensors = load_file(model_file)
    assert set(tensors) == {"w", "b"} and tensors["w"].shape == (25,)
    meta, _ = read_file(model_file)
    assert meta["kind"] == "model" and meta["layer_sizes"] == [3, 5, 2] and meta["dtype"] == "float64"
    assert len(meta["sha256"]) == 64 and meta["format_version"] == 1


def _header(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _with_header(path: Path, header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


def _mutate_meta(path: Path, **changes) -> bytes:
    header, data = _header(path)
    meta = json.loads(header["__metadata__"]["flatnet_xp"]) | changes
    header["__metadata__"]["flatnet_xp"] = json.dumps(meta)
    return _with_header(path, header, data)


HOSTILE = {
    "empty": lambda p: b"",
    "seven bytes": lambda p: b"\x01" * 7,
    "random bytes": lambda p: np.random.default_rng(0).bytes(4096),
    "a pickle": lambda p: pickle.dumps({"w": np.zeros(25), "b": np.zeros(7)}),
    "npz with objects": lambda p: _npz_with_objects(),
    "huge header length": lambda p: struct.pack("<Q", 2**63) + b"{}",
    "lying header length": lambda p: struct.pack("<Q", 10_000) + p.read_bytes()[8:],
    "header over the bound": lambda p: struct.pack("<Q", MAX_HEADER_BYTES + 1) + b" " * (MAX_HEADER_BYTES + 1),
    "deeply nested json": lambda p: _raw_header(b"[" * 100_000 + b"]" * 100_000),
    "header not an object": lambda p: _raw_header(b"[1, 2]"),
    "not utf-8": lambda p: _raw_header(b"\xff\xfe{}"),
    "truncated data": lambda p: p.read_bytes()[:-9],
    "padded data": lambda p: p.read_bytes() + b"\x00" * 8,
    "flipped byte in data": lambda p: _flip(p.read_bytes(), -3),
    "flipped byte in header": lambda p: _flip_in_header(p),
    "foreign safetensors": lambda p: _foreign(),
    "format version 99": lambda p: _mutate_meta(p, format_version=99),
    "unknown kind": lambda p: _mutate_meta(p, kind="tokenizer"),
    "layer sizes that lie": lambda p: _mutate_meta(p, layer_sizes=[3, 6, 2]),
    "huge layer sizes": lambda p: _mutate_meta(p, layer_sizes=[2**40, 2**40]),
    "unknown activation": lambda p: _mutate_meta(p, activations=["tanh", "softsign"]),
    "wrong dtype": lambda p: _mutate_meta(p, dtype="float32"),
    "wrong checksum": lambda p: _mutate_meta(p, sha256="0" * 64),
    "overlapping offsets": lambda p: _overlap(p),
}


def _raw_header(h: bytes) -> bytes:
    return struct.pack("<Q", len(h)) + h


def _flip(raw: bytes, i: int) -> bytes:
    b = bytearray(raw)
    b[i] ^= 0x40
    return bytes(b)


def _flip_in_header(p: Path) -> bytes:
    raw = p.read_bytes()
    return _flip(raw, raw.index(b"layer_sizes") + 3)


def _npz_with_objects() -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, X=np.array([{"a": 1}], dtype=object))
    return buf.getvalue()


def _foreign() -> bytes:
    from safetensors.numpy import save

    return save({"weight": np.zeros((2, 2), dtype=np.float32)})


def _overlap(p: Path) -> bytes:
    header, data = _header(p)
    b_start, b_end = header["b"]["data_offsets"]
    w_start = header["w"]["data_offsets"][0]
    header["b"]["data_offsets"] = [w_start, w_start + b_end - b_start]  # b now reads w's first bytes
    return _with_header(p, header, data)


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_malformed_files_raise_one_documented_error(kind, model_file, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(HOSTILE[kind](model_file))
    with pytest.raises(fx.ModelFileError, match=r"not a valid flatnet_xp file"):
        fx.FlatMLP.load(bad)


def test_model_file_error_is_a_value_error():
    assert issubclass(fx.ModelFileError, ValueError)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        fx.FlatMLP.load(tmp_path / "nope.safetensors")


_VALID = None


def _valid_bytes() -> bytes:
    global _VALID
    if _VALID is None:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            small_net().save(Path(d) / "m.safetensors")
            _VALID = (Path(d) / "m.safetensors").read_bytes()
    return _VALID


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_files_either_load_intact_or_raise_model_file_error(data, tmp_path):
    raw = bytearray(_valid_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[i] ^= data.draw(st.integers(1, 255))
        elif op == "truncate" or op == "flip":
            del raw[i:]
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=16))
        elif raw:
            del raw[i]
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(bytes(raw))
    try:
        net = fx.FlatMLP.load(path)
    except fx.ModelFileError:
        return
    assert_close(net.params, small_net().params, rtol=0)  # only a harmless change can load


SAVER = textwrap.dedent(
    """
    import sys, numpy as np, flatnet_xp as fx
    path = sys.argv[1]
    nets = [fx.FlatMLP([40, 300, 30], ["tanh", "identity"], dtype="float64", seed=s) for s in (1, 2)]
    print("ready", flush=True)
    i = 0
    while True:
        nets[i % 2].save(path)
        i += 1
    """
)


@pytest.mark.slow
def test_a_save_killed_at_any_moment_leaves_a_complete_file(tmp_path):
    path = tmp_path / "model.safetensors"
    expected = [fx.FlatMLP([40, 300, 30], ["tanh", "identity"], dtype="float64", seed=s).params for s in (1, 2)]
    rng = np.random.default_rng(0)
    for trial in range(8):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, cwd=ROOT)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.05 + rng.random() * 0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not path.exists():  # killed before the very first save finished: nothing was ever visible
            continue
        params = fx.FlatMLP.load(path).params
        assert any(np.array_equal(params, e) for e in expected), f"trial {trial}: a mixed or partial file"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "model.safetensors"]
    assert all(name.startswith(".model.safetensors.flatnet-tmp-") for name in leftovers)  # a killed writer's
    small_net().save(path)  # the next successful save removes them
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    small_net().save(path)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        fx.FlatMLP([3, 5, 2], ["tanh", "identity"], dtype="float64", seed=9).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_resume_from_a_model_file_is_refused(model_file):
    with pytest.raises(fx.ModelFileError, match="not a checkpoint"):
        small_net().fit(
            np.zeros((4, 3)), np.zeros((4, 2)), epochs=3, optimizer=fx.SGD(lr=0.1), resume=model_file, progress=False
        )


def test_to_moves_a_copy_between_backends(xp):
    net = small_net()
    moved = net.to(xp, dtype="float32")
    assert moved.backend == xp and moved.dtype_name == "float32"
    assert_close(moved.params, net.params.astype(np.float32), rtol=0)
    net.w[0] = 123.0
    assert float(moved.w[0]) != 123.0  # an independent copy


def test_torch_exchange_in_both_directions_gives_identical_outputs():
    torch = pytest.importorskip("torch")
    net = fx.FlatMLP([4, 6, 5, 3], ["relu", "leaky_relu", "identity"], dtype="float64", seed=0)
    X = np.random.default_rng(0).normal(size=(7, 4))
    seq = net.to_torch()
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear", "LeakyReLU", "Linear"]
    # same weights, different GEMM kernels: equal to the last bit or two
    np.testing.assert_allclose(seq(torch.tensor(X)).detach().numpy(), to_numpy(net.forward(X)), rtol=1e-14, atol=1e-15)
    back = fx.FlatMLP.from_torch(seq)
    assert back.activations == net.activations
    np.testing.assert_array_equal(back.params, net.params)
    from_sd = fx.FlatMLP.from_torch(net.torch_state_dict(), ["relu", "leaky_relu", "identity"])
    np.testing.assert_array_equal(from_sd.params, net.params)


def test_from_torch_reads_a_model_built_in_torch():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2), torch.nn.Sigmoid())
    net = fx.FlatMLP.from_torch(seq, backend="numpy")
    X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    assert net.activations == ("tanh", "sigmoid") and net.dtype_name == "float32"
    np.testing.assert_allclose(net.forward(X), seq(torch.tensor(X)).detach().numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda t: t.nn.Sequential(t.nn.Linear(3, 4), t.nn.Softmax(dim=1)), "expected nn.Linear or one of"),
        (lambda t: t.nn.Sequential(t.nn.ReLU(), t.nn.Linear(3, 4)), "expected an activation right after"),
        (lambda t: t.nn.Sequential(t.nn.Linear(3, 4, bias=False)), "with a bias"),
        (lambda t: t.nn.Sequential(t.nn.Linear(3, 4), t.nn.Linear(5, 2)), "do not chain"),
        (lambda t: t.nn.Sequential(t.nn.Linear(3, 4), t.nn.LeakyReLU(0.2)), "only LeakyReLU"),
        (lambda t: {"0.weight": t.zeros(4, 3)}, "expected pairs"),
    ],
)
def test_from_torch_rejects_what_it_cannot_represent(build, match):
    torch = pytest.importorskip("torch")
    module = build(torch)
    with pytest.raises(ValueError, match=match):
        fx.FlatMLP.from_torch(module, None if not isinstance(module, dict) else "relu")
