"""The benchmark package without timing asserts: GEMM peak bookkeeping, records, ratios, plots, the JAX
peer against a NumPy reference, backend discovery, and the progress bar's terminal check."""

from __future__ import annotations

import importlib.util
import io
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import flatnet_xp as fx
from flatnet_xp.bench import impls, peak, runner
from flatnet_xp.bench.configs import CONFIGS, Config, flops_per_step
from flatnet_xp.bench.impls import LR, Runner, glorot_params, jax_runner, make_data
from flatnet_xp.bench.peak import Gemm, GemmPeak, config_gemms, time_gemm
from flatnet_xp.bench.plots import FAMILIES, plot_results, scaling_figure, throughput_figure
from flatnet_xp.bench.runner import Timing, _record, ratios

HAS_JAX = importlib.util.find_spec("jax") is not None
needs_jax = pytest.mark.skipif(not HAS_JAX, reason="jax is not installed")

TINY = Config("tiny", (3, 4, 2), "tanh", "sigmoid", "mse", 5, "float64", 2, 2)
TINY_CE = Config("tiny-ce", (3, 4, 3), "relu", "identity", "cross_entropy", 5, "float64", 2, 2)


def fake_record(cfg: Config, impl: str, backend: str, step_s: float, *, jit: bool = False, gflops_peak=None):
    """A record made by the runner's own code from a made-up timing (first call 0.5 s slower when ``jit``)."""
    steps = cfg.quick_steps
    timing = Timing(first_s=steps * step_s + (0.5 if jit else 0.0), times=[steps * step_s] * 3)
    fake = Runner(impl, backend, run=lambda k: None, peak_mem=lambda k: None, jit=jit)
    return _record(cfg, fake, steps, timing, gflops_peak, None, "test CPU")


# ----------------------------------------------------------------------------- GEMM peak
def test_config_gemms_are_the_three_gemms_of_every_layer_and_add_up_to_the_flop_count():
    cfg = CONFIGS["mnist-784-256-256-10"]
    gemms = config_gemms(cfg)
    assert len(gemms) == 3 * (len(cfg.sizes) - 1)
    assert gemms[0] == Gemm(128, 784, 256, b_t=True)  # (batch x in) @ (in x out), W stored (out, in)
    assert gemms[1] == Gemm(256, 128, 784, a_t=True)  # delta.T @ a
    assert gemms[2] == Gemm(128, 256, 784)  # delta @ W
    assert sum(g.flops for g in gemms) == flops_per_step(cfg)


def test_time_gemm_times_at_least_min_repeats_calls():
    gflops, calls = time_gemm(Gemm(8, 5, 3, a_t=True, b_t=True), "float64", min_repeats=4, max_repeats=6, budget_s=0)
    assert gflops > 0 and calls == 4


def test_a_record_above_the_measured_peak_raises_it_and_no_record_exceeds_it():
    cfg = CONFIGS["deep-8x64"]
    pk = GemmPeak(lib=None)
    pk.offer("float32", 10.0, "gemm", "GEMM (64 x 64) @ (64 x 64)")
    fast = fake_record(cfg, "torch", "torch-cpu", flops_per_step(cfg) / 20e9, gflops_peak=10.0)  # 20 GFLOP/s
    slow = fake_record(cfg, "flatnet_xp", "numpy", flops_per_step(cfg) / 5e9, gflops_peak=10.0)
    seed = fake_record(CONFIGS["seed-per-sample"], "seed_loops", "numpy", 1e-4)
    assert fast["peak_fraction"] == pytest.approx(2.0)  # as measured: above the peak
    raised = pk.raise_to_records([fast, slow, seed])
    assert [(s.dtype, s.kind) for s in raised] == [("float32", "record"), ("float64", "record")]
    assert pk.value("float32") == pytest.approx(20.0)
    assert fast["peak_fraction"] == pytest.approx(1.0) and slow["peak_fraction"] == pytest.approx(0.25)
    assert fast["peak_gflops"] == slow["peak_gflops"] == pytest.approx(20.0)
    env = pk.describe()
    assert env["gemm_peak_source"]["float32"] == {"kind": "record", "what": "record torch/torch-cpu on deep-8x64"}
    assert env["gemm_peak_gflops"]["float64"] == pytest.approx(seed["gflops"])  # no GEMM timed: the record


def test_a_slower_record_leaves_the_peak_alone():
    pk = GemmPeak(lib=None)
    pk.offer("float32", 100.0, "gemm", "GEMM square")
    rec = fake_record(CONFIGS["deep-8x64"], "flatnet_xp", "numpy", flops_per_step(CONFIGS["deep-8x64"]) / 50e9)
    assert pk.raise_to_records([rec]) == []
    assert pk.best["float32"].kind == "gemm" and rec["peak_fraction"] == pytest.approx(0.5)


@pytest.mark.parametrize("quick", [True, False])
def test_run_benchmarks_raises_the_peak_to_a_record_and_pipes_no_progress_bar(monkeypatch, capsys, quick):
    monkeypatch.setattr(peak, "time_gemm", lambda *a, **k: (1e-9, 3))  # a peak any record beats
    monkeypatch.setattr(
        runner,
        "_jobs",
        lambda cfg, steps, quick, gpu: [("flatnet_xp/numpy", lambda: impls.flatnet_runner(cfg, steps, "numpy"))],
    )
    records, env = runner.run_benchmarks(["deep-8x64"], quick=quick, repeats=1, threads=1, progress=True)
    (rec,) = records
    assert env["gemm_peak_source"]["float32"]["kind"] == "record"
    assert rec["peak_fraction"] == pytest.approx(1.0) and rec["peak_gflops"] == pytest.approx(rec["gflops"])
    shapes = len({*peak.square_gemms(False), *config_gemms(CONFIGS["deep-8x64"])})
    whens = [t["when"] for t in env["gemm_timings"]]
    assert whens == ["before"] * shapes + ([] if quick else ["after"] * shapes)  # again after, outside --quick
    out = capsys.readouterr()
    assert "GEMM peak (float32) raised" in out.out
    assert "\r" not in out.err and "\x1b" not in out.err  # stderr is not a terminal here


# ----------------------------------------------------------------------------- records and ratios
def test_compile_time_and_ten_epoch_fit_cost_only_for_jit_runners():
    cfg = CONFIGS["deep-8x64"]  # quick: 100 steps = 10 epochs of 10 batches
    jit = fake_record(cfg, "jax", "jax-cpu", 1e-3, jit=True)
    assert jit["compile_s"] == pytest.approx(0.5)
    assert jit["fit10_ms_per_step"] == pytest.approx((0.5 + 100 * 1e-3) / 100 * 1e3)
    eager = fake_record(cfg, "torch", "torch-cpu", 1e-3)
    assert eager["compile_s"] is None and eager["fit10_ms_per_step"] is None
    assert eager["first_call_s"] == pytest.approx(0.1)
    assert Timing(first_s=1.0, times=[2.0]).compile_s == 0.0  # noise never makes a negative compile time


def test_ratios_compare_flatnet_jax_with_numpy_and_the_jax_peer():
    cfg = CONFIGS["mnist-784-256-256-10"]
    recs = [
        fake_record(cfg, "flatnet_xp", "numpy", 1e-3),
        fake_record(cfg, "flatnet_xp", "jax", 2e-3, jit=True),
        fake_record(cfg, "torch", "torch-cpu", 1.5e-3),
        fake_record(cfg, "jax", "jax-cpu", 0.5e-3, jit=True),
    ]
    got = {(r["ours"], r["versus"]): r["speedup"] for r in ratios(recs)}
    assert got == pytest.approx(
        {
            ("flatnet_xp/numpy", "torch/torch-cpu"): 1.5,
            ("flatnet_xp/numpy", "jax/jax-cpu"): 0.5,
            ("flatnet_xp/jax", "flatnet_xp/numpy"): 0.5,
            ("flatnet_xp/jax", "jax/jax-cpu"): 0.25,
        }
    )


# ----------------------------------------------------------------------------- plots
def sample_records() -> list[dict]:
    out = []
    for name in ("seed-per-sample", "mnist-784-256-256-10"):
        cfg = CONFIGS[name]
        out += [
            fake_record(cfg, "flatnet_xp", "numpy", 1e-4, gflops_peak=300.0),
            fake_record(cfg, "torch", "torch-cpu", 2e-4, gflops_peak=300.0),
            fake_record(cfg, "jax", "jax-cpu", 5e-5, jit=True, gflops_peak=300.0),
            fake_record(cfg, "sklearn", "numpy", 3e-4, gflops_peak=300.0),
        ]
    return out


def sample_scaling() -> list[dict]:
    pts = []
    for axis, values, sizes in (("width", (64, 256), None), ("batch", (1, 16), [784, 256, 256, 10])):
        for v in values:
            for impl, backend, ms in (("flatnet_xp", "numpy", 0.1 * v), ("torch", "torch-cpu", 0.2 * v)):
                pts.append(
                    {
                        "axis": axis,
                        "value": v,
                        "impl": impl,
                        "backend": backend,
                        "sizes": sizes or [v] * 4,
                        "dtype": "float32",
                        "batch": 128 if axis == "width" else v,
                        "step_ms_median": ms,
                    }
                )
    return pts


def check_axes(fig) -> None:
    from matplotlib.colors import to_hex

    assert fig.get_suptitle()
    for ax in fig.axes:
        assert ax.get_title(loc="left") or ax.get_title()
        assert ax.get_xlabel() and ax.get_ylabel()
        legend = ax.get_legend()
        assert legend is not None
        labels = {t.get_text() for t in legend.get_texts()}
        colours = {to_hex(p.get_facecolor()) for p in ax.patches if p.get_hatch() is None}
        colours |= {to_hex(line.get_color()) for line in ax.get_lines()}
        legend_colours = {
            to_hex(h.get_facecolor() if hasattr(h, "get_hatch") else h.get_color()) for h in legend.legend_handles
        }
        assert colours <= legend_colours, (colours, legend_colours, labels)
        for tick in ax.get_xticklabels() + ax.get_yticklabels():
            assert "$" not in tick.get_text()  # no 2x10^0-style mathtext labels


def test_throughput_figure_panels_are_labelled_with_layers_dtype_and_batch():
    fig = throughput_figure(sample_records())
    check_axes(fig)
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == [
        "seed-per-sample: layers [50, 5], float64, batch 1",
        "mnist-784-256-256-10: layers [784, 256, 256, 10], float32, batch 128",
    ]
    hatched = [p for p in fig.axes[0].patches if p.get_hatch()]
    assert len(hatched) == 1  # the JAX peer's 10-epoch fit, compile included


def test_scaling_figure_panels_name_dtype_and_batch():
    fig = scaling_figure(sample_scaling())
    check_axes(fig)
    width, batch = (ax.get_title() for ax in fig.axes)
    assert "float32" in width and "batch 128" in width
    assert "float32" in batch and "batch on the x axis" in batch


def test_plot_results_writes_png_files(tmp_path):
    written = plot_results(sample_records(), sample_scaling(), tmp_path / "plots")
    assert [p.name for p in written] == ["samples_per_sec.png", "scaling.png"]
    for p in written:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_families_cover_every_implementation():
    assert set(impls.IMPLS) <= set(FAMILIES)


# ----------------------------------------------------------------------------- the JAX peer
def numpy_loss(cfg: Config, params, x, y) -> float:
    """Independent NumPy forward pass and loss of ``cfg`` (the reference for the JAX peer)."""
    acts = {"tanh": np.tanh, "relu": lambda s: np.maximum(s, 0), "sigmoid": lambda s: 1 / (1 + np.exp(-s))}
    acts["identity"] = lambda s: s
    for (W, b), act in zip(params, cfg.activations, strict=True):
        x = acts[act](x @ W + b)
    if cfg.loss == "mse":
        return float(np.mean((x - y) ** 2))
    z = x - x.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(y)), y]))


@needs_jax
@pytest.mark.parametrize("cfg", [TINY, TINY_CE], ids=["mse-sigmoid", "cross-entropy"])
def test_jax_peer_matches_numpy_in_float64_and_leaves_the_global_x64_flag_alone(cfg):
    import jax

    before = jax.config.jax_enable_x64
    run = jax_runner(cfg, 2)
    assert (run.impl, run.backend, run.jit) == ("jax", "jax-cpu", True)
    run.run(2)  # one epoch of two batches
    losses = run.last_losses()
    assert losses is not None and losses.dtype == np.float64 and losses.shape == (2,)
    assert jax.config.jax_enable_x64 == before

    X, Y = make_data(cfg, 2)
    B = cfg.batch
    assert losses[0] == pytest.approx(numpy_loss(cfg, glorot_params(cfg), X[:B], Y[:B]), abs=1e-6)
    # step 2 sees the weights after one SGD step: flatnet_xp's NumPy backend takes the same step
    net = fx.FlatMLP(cfg.sizes, cfg.activations, dtype="float64", seed=0)
    net.fit(X[:B], Y[:B], epochs=1, batch_size=B, optimizer=fx.SGD(lr=LR), loss=cfg.loss, progress=False)
    assert losses[1] == pytest.approx(net.loss_and_grad(X[B:], Y[B:], cfg.loss)[0], abs=1e-6)


@needs_jax
def test_jax_peer_runs_float32_and_keeps_training_across_calls():
    cfg = Config("tiny32", (3, 4, 2), "leaky_relu", "identity", "mse", 5, "float32", 20, 20)
    run = jax_runner(cfg, 20)
    run.run(20)  # 2 epochs of 10 batches
    first = run.last_losses()
    run.run(20)
    second = run.last_losses()
    assert first is not None and second is not None
    assert first.dtype == np.float32 and first.shape == (10,) and not np.array_equal(first, second)
    assert run.peak_mem(5) is None


# ----------------------------------------------------------------------------- backends and jobs
def flatnet_jax_resolves() -> bool:
    from flatnet_xp.backends import get_backend

    try:
        get_backend("jax")
    except Exception:
        return False
    return True


def test_available_backends_lists_jax_exactly_when_flatnet_xp_resolves_it(monkeypatch):
    assert (("jax", None) in runner.available_backends()) == (HAS_JAX and flatnet_jax_resolves())
    monkeypatch.setattr(runner, "_flatnet_jax", lambda: None)
    assert ("jax", None) not in runner.available_backends()
    monkeypatch.setattr(runner, "_flatnet_jax", lambda: object())
    assert ("jax", None) in runner.available_backends()


@pytest.mark.skipif(not (HAS_JAX and flatnet_jax_resolves()), reason="flatnet_xp has no JAX backend here (yet)")
def test_flatnet_runner_trains_on_the_jax_backend_in_float64():
    import jax

    before = jax.config.jax_enable_x64
    run = impls.flatnet_runner(TINY, 2, "jax")
    run.run(2)
    assert run.jit and run.backend == "jax" and jax.config.jax_enable_x64 == before


class FakeJaxNet:
    """Stands in for ``FlatMLP(backend="jax")`` until that backend lands: immutable JAX data, and a
    note of whether float64 was enabled when it was built and trained."""

    made: ClassVar[list[FakeJaxNet]] = []

    def __init__(self, sizes, activations, *, backend, dtype, seed, device):
        import jax
        import jax.numpy as jnp

        self.x64_at_init = jax.config.jax_enable_x64
        backend = types.SimpleNamespace(asarray=lambda x, dtype=None: jnp.asarray(x, dtype=dtype), is_gpu=False)
        self.flat_params = types.SimpleNamespace(backend=backend)
        self.dtype = getattr(jnp, dtype)
        self.params = jnp.zeros(3, dtype=self.dtype)
        self.fits: list[tuple] = []
        FakeJaxNet.made.append(self)

    def fit(self, X, Y, **kwargs):
        import jax

        self.fits.append((X, Y, jax.config.jax_enable_x64, kwargs["epochs"]))


@needs_jax
def test_flatnet_runner_builds_and_fits_a_jax_network_under_scoped_x64(monkeypatch):
    import jax

    monkeypatch.setattr(fx, "FlatMLP", FakeJaxNet)
    run = impls.flatnet_runner(TINY, 20, "jax")
    run.run(20)
    run.run(20)
    net = FakeJaxNet.made[-1]
    assert net.x64_at_init and all(x64 for _, _, x64, _ in net.fits) and not jax.config.jax_enable_x64
    (X1, Y1, _, epochs), (X2, Y2, _, _) = net.fits
    assert X1.dtype == np.float64 and X1.shape == (10 * TINY.batch, 3) and epochs == 2
    assert X1 is X2 and Y1 is Y2  # sliced once, not copied again on every run
    assert run.jit and run.peak_mem(5) is None


def test_jobs_include_the_jax_peer_on_cpu_and_skip_it_on_a_missing_gpu(monkeypatch):
    cfg = CONFIGS["deep-8x64"]
    labels = [label for label, _ in runner._jobs(cfg, 10, quick=True, gpu=False)]
    assert ("jax/cpu" in labels) == HAS_JAX
    monkeypatch.setattr(runner, "_jax_gpu", lambda: False)
    assert "jax/gpu" not in [label for label, _ in runner._jobs(cfg, 10, quick=True, gpu=True)]


def test_quick_mode_skips_the_slow_backends_on_big_networks():
    labels = [label for label, _ in runner._jobs(CONFIGS["wide-1024-4096-4096-1024"], 1, quick=True, gpu=False)]
    assert "flatnet_xp/numpy" in labels
    assert "flatnet_xp/array_api_strict" not in labels and "flatnet_xp/torch" not in labels


# ----------------------------------------------------------------------------- progress bar
class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(monkeypatch):
    pytest.importorskip("tqdm")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert runner._bar(3, True) is None
    monkeypatch.setattr("sys.stderr", FakeTerminal())
    assert runner._bar(3, False) is None  # --no-progress
    bar = runner._bar(3, True)
    assert bar is not None
    bar.close()


def test_gpu_run_with_nothing_on_a_gpu_is_an_error_not_an_empty_result(monkeypatch, capsys):
    from flatnet_xp.cli import main

    monkeypatch.setattr(runner, "_jobs", lambda cfg, steps, quick, gpu: [])
    assert main(["bench", "--gpu", "--quick", "--no-progress"]) == 2
    assert "nothing runs on a GPU" in capsys.readouterr().err
