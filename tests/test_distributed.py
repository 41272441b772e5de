"""Data-parallel training under ``mpiexec -n 2``: one Allreduce of the flat gradient per step."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import flatnet_xp as fx

HERE = Path(__file__).resolve().parent
MPIEXEC = shutil.which("mpiexec")
pytestmark = [
    pytest.mark.mpi,
    pytest.mark.skipif(
        importlib.util.find_spec("mpi4py") is None or MPIEXEC is None,
        reason="mpi4py and an MPI runtime (pip install 'flatnet_xp[mpi]') are needed",
    ),
]


def run_ranks(mode: str, tmp_path: Path, n: int = 2, sync_every: int | None = None) -> list[dict]:
    env = dict(os.environ)
    if sync_every is not None:  # what GPU ranks do: read the control flags every few steps only
        env["FLATNET_XP_SYNC_EVERY"] = str(sync_every)
    proc = subprocess.run(
        [MPIEXEC, "-n", str(n), sys.executable, str(HERE / "mpi_worker.py"), mode, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=HERE.parent,
        env=env,
    )
    results = [tmp_path / f"rank{r}.json" for r in range(n)]
    assert all(p.exists() for p in results), f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return [json.loads(p.read_text()) for p in results]


@pytest.mark.parametrize(("opt_name", "sync_every"), [("sgd", None), ("adam", None), ("adam", 4)])
def test_two_ranks_equal_one_process_with_the_concatenated_batches(opt_name, sync_every, tmp_path):
    ranks = run_ranks(f"equivalence-{opt_name}", tmp_path, sync_every=sync_every)
    assert all(r["same_on_all_ranks"] for r in ranks)
    np.testing.assert_array_equal(ranks[0]["params"], ranks[1]["params"])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 22, 5))
    Y = rng.integers(0, 3, size=(2, 22))
    order = [(r, slice(s, min(s + 4, 22))) for s in range(0, 22, 4) for r in range(2)]
    Xg = np.concatenate([X[r][sl] for r, sl in order])
    Yg = np.concatenate([Y[r][sl] for r, sl in order])
    # batch size 8 walks the interleaved data exactly as the two ranks' 4-sample batches (the last is 2 + 2)
    assert [len(range(22)[sl]) for _, sl in order][-2:] == [2, 2]
    net = fx.FlatMLP([5, 8, 3], ["tanh", "identity"], dtype="float64", seed=0)
    opt = fx.SGD(lr=0.1, momentum=0.9, nesterov=True) if opt_name == "sgd" else fx.Adam(lr=0.02)
    batches = [slice(i, i + 8) for i in range(0, 40, 8)] + [slice(40, 44)]
    for _ in range(3):
        for sl in batches:
            net.fit(
                Xg[sl],
                Yg[sl],
                epochs=1,
                batch_size=8,
                optimizer=opt,
                shuffle=False,
                loss="cross_entropy",
                progress=False,
            )
    np.testing.assert_allclose(ranks[0]["params"], net.params, rtol=1e-12, atol=1e-12)


def test_ranks_stay_identical_with_per_rank_shuffling(tmp_path):
    assert all(r["same_on_all_ranks"] for r in run_ranks("shuffle", tmp_path))


def test_unequal_shards_raise_on_every_rank(tmp_path):
    for r in run_ranks("unequal", tmp_path):
        assert r["error"] and "same length" in r["error"] and "[22, 21]" in r["error"]


def test_a_failing_rank_stops_every_rank_with_a_clear_error(tmp_path):
    r0, r1 = run_ranks("failure", tmp_path)
    assert r1["error"] == "RuntimeError: boom on rank 1"
    assert r0["error"].startswith("RemoteRankError: another MPI rank raised")


def test_only_rank_zero_writes_the_checkpoint(tmp_path):
    ranks = run_ranks("checkpoint", tmp_path)
    assert all(r["exists"] for r in ranks) and ranks[0]["leftovers"] == []
    meta = fx.persistence.read_file(tmp_path / "ckpt.safetensors")[0]
    assert meta["epoch"] == 2


@pytest.mark.parametrize("sync_every", [1, 5])
def test_a_rank_failing_mid_epoch_never_hangs_the_others(tmp_path, sync_every):
    r0, r1 = run_ranks("failure-mid-epoch", tmp_path, sync_every=sync_every)
    assert r1["error"] == "RuntimeError: boom on rank 1 at step 7"
    assert r0["error"].startswith("RemoteRankError: another MPI rank raised")
    assert r0["params_finite"] and r0["restored_epoch_start"]  # steps after the failure are undone
