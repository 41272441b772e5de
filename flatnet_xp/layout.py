"""The flat parameter layout: sizes and offsets of every layer inside ``w`` and ``b`` (backend-free)."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate, pairwise

from flatnet_xp._validation import check_layer_sizes

__all__ = ["Layout"]


@dataclass(frozen=True)
class Layout:
    """Where each layer's weights and biases sit in the flat arrays ``w`` and ``b``.

    For layer sizes ``L_1, ..., L_n`` (input first) weight layer ``k`` (``k = 0 .. n-2``) is the
    ``(L_{k+2}, L_{k+1})`` row-major matrix ``w[w_offsets[k] : w_offsets[k+1]]``: element ``(j, i)``
    (input ``i`` to output ``j``) is ``w[w_offsets[k] + i + L_{k+1} * j]``, the index of the
    seed write-up. That is ``torch.nn.Linear.weight``'s layout, so no transpose is ever needed.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first; at least two, each positive.

    Attributes
    ----------
    sizes : tuple of int
    w_offsets : tuple of int
        ``n`` entries: start of each weight layer, then ``w_len``.
    b_offsets : tuple of int
        ``n`` entries: start of each bias vector, then ``b_len``.

    Examples
    --------
    >>> lay = Layout((50, 5))
    >>> lay.w_len, lay.b_len
    (250, 5)
    >>> Layout((3, 4, 2)).weight_index(1, 1, 0)  # layer 1, output 1, input 0
    20
    """

    sizes: tuple[int, ...]

    def __init__(self, sizes: Sequence[int]) -> None:
        object.__setattr__(self, "sizes", check_layer_sizes(sizes))

    @cached_property
    def n_layers(self) -> int:
        """Number of weight layers (``len(sizes) - 1``)."""
        return len(self.sizes) - 1

    @cached_property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """``(L_out, L_in)`` of every weight layer."""
        return tuple((n_out, n_in) for n_in, n_out in pairwise(self.sizes))

    @cached_property
    def w_offsets(self) -> tuple[int, ...]:
        """Start of each weight layer in ``w``, then ``w_len`` (``n_layers + 1`` entries)."""
        return tuple(accumulate((o * i for o, i in self.shapes), operator.add, initial=0))

    @cached_property
    def b_offsets(self) -> tuple[int, ...]:
        """Start of each layer's biases in ``b``, then ``b_len`` (``n_layers + 1`` entries)."""
        return tuple(accumulate(self.sizes[1:], operator.add, initial=0))

    @cached_property
    def w_len(self) -> int:
        """``L_1 L_2 + L_2 L_3 + ... + L_{n-1} L_n``."""
        return self.w_offsets[-1]

    @cached_property
    def b_len(self) -> int:
        """``L_2 + ... + L_n``."""
        return self.b_offsets[-1]

    @cached_property
    def n_params(self) -> int:
        """``w_len + b_len``: the length of the one parameter buffer (and of each optimizer state buffer)."""
        return self.w_len + self.b_len

    def w_slice(self, k: int) -> slice:
        """Slice of ``w`` holding weight layer ``k``."""
        off = self.w_offsets
        return slice(off[k], off[k + 1])

    def b_slice(self, k: int) -> slice:
        """Slice of ``b`` holding the biases of layer ``k``."""
        off = self.b_offsets
        return slice(off[k], off[k + 1])

    def weight_index(self, k: int, j: int, i: int) -> int:
        """Flat index in ``w`` of the weight from input ``i`` to output ``j`` of layer ``k``."""
        n_out, n_in = self.shapes[k]
        if not (0 <= i < n_in and 0 <= j < n_out):
            raise IndexError(f"layer {k} has shape {(n_out, n_in)}; got output {j}, input {i}")
        return self.w_offsets[k] + i + n_in * j

    def bias_index(self, k: int, j: int) -> int:
        """Flat index in ``b`` of output ``j``'s bias in layer ``k``."""
        return self.b_offsets[k] + j

    def flops_per_sample(self) -> int:
        """Multiply-adds x 2 of one forward + backward pass per sample: ``6 * w_len``."""
        return 6 * self.w_len
