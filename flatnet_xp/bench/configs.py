"""Benchmark configurations: the network, batch, dtype and the number of steps each measurement runs."""

from __future__ import annotations

from dataclasses import dataclass

from flatnet_xp.layout import Layout

__all__ = ["CONFIGS", "Config", "flops_per_step"]


@dataclass(frozen=True)
class Config:
    """One benchmark configuration.

    Attributes
    ----------
    name : str
    sizes : tuple of int
        Layer widths, input first.
    hidden : str
        Hidden-layer activation (the last layer is ``out_act``).
    out_act : str
    loss : str
    batch : int
    dtype : str
    steps : int
        Optimizer steps per timed repeat (``quick`` uses ``quick_steps``).
    quick_steps : int
    """

    name: str
    sizes: tuple[int, ...]
    hidden: str
    out_act: str
    loss: str
    batch: int
    dtype: str
    steps: int
    quick_steps: int

    @property
    def activations(self) -> list[str]:
        """One activation per weight layer: ``hidden`` everywhere, ``out_act`` last."""
        return [self.hidden] * (len(self.sizes) - 2) + [self.out_act]

    @property
    def layers(self) -> list[tuple[int, int, str]]:
        """``(fan_in, fan_out, activation)`` of every weight layer, input side first."""
        return list(zip(self.sizes[:-1], self.sizes[1:], self.activations, strict=True))

    @property
    def n_weights(self) -> int:
        """Number of weights (biases excluded)."""
        return Layout(self.sizes).w_len


def flops_per_step(cfg: Config) -> float:
    """``6 * batch * weights``: 2 flops per multiply-add, forward (1 GEMM) + backward (2 GEMMs).

    Bias adds, activations, the loss and the update are O(batch * width) or O(weights) and left out;
    the first layer's input gradient, which no implementation computes, is counted (a ~1/depth
    overestimate for shallow nets, the convention of MLPerf-style "6 x params x tokens" counts).
    """
    return float(cfg.batch * Layout(cfg.sizes).flops_per_sample())


CONFIGS: dict[str, Config] = {
    c.name: c
    for c in (
        # The seed's network, per-sample SGD: pure interpreter overhead, 1000 samples per repeat
        # (--quick: the first 150).
        Config("seed-per-sample", (50, 5), "sigmoid", "sigmoid", "mse", 1, "float64", 1000, 150),
        # A small deep net: 8 hidden layers of 64.
        Config("deep-8x64", (64,) + (64,) * 8 + (10,), "relu", "identity", "cross_entropy", 32, "float32", 200, 100),
        # MNIST-sized MLP.
        Config(
            "mnist-784-256-256-10", (784, 256, 256, 10), "relu", "identity", "cross_entropy", 128, "float32", 100, 24
        ),
        # Wide: GEMM-bound (--quick: one 0.1-0.2 s step per repeat).
        Config("wide-1024-4096-4096-1024", (1024, 4096, 4096, 1024), "relu", "identity", "mse", 256, "float32", 6, 1),
    )
}
