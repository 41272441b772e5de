"""The math of a FlatMLP as pure functions over its flat buffers: ONE code path for every backend.

Everything here is a function of flat arrays that RETURNS its result. On mutable backends (NumPy,
CuPy, PyTorch, array-api-strict) the returned arrays are the preallocated buffers of a
:class:`Workspace` and views of the flat parameter and gradient buffers, written in place through
the shim (:mod:`flatnet_xp.backends`); on JAX they are new arrays, and the same functions are traced
into one compiled program per epoch (:mod:`flatnet_xp.engines.compiled`).

The layout (see :class:`flatnet_xp.layout.Layout`): weight layer ``k`` is the row-major
``(L_{k+1}, L_k)`` matrix ``w[w_off_k : w_off_{k+1}]`` (element ``(j, i)`` is
``w[w_off_k + i + L_k j]``, the seed write-up's index), its biases ``b[b_off_k : b_off_{k+1}]``; the
parameter buffer is ``[w, b]``. For a batch ``a_0 = x`` of shape ``(n, L_1)``:

* forward: ``z_k = a_{k-1} W_k^T + b_k``, ``a_k = f_k(z_k)``;
* backward, from ``delta_out = dL/dz_out``: ``delta_k = dL/da_k * f_k'(z_k)`` (written from ``a_k``),
  ``dW_k = delta_k^T a_{k-1}``, ``db_k = sum_n delta_k``, ``dL/da_{k-1} = delta_k W_k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from flatnet_xp.activations import ACTIVATIONS, Activation
from flatnet_xp.backends import NO_OUT, Ops
from flatnet_xp.layout import Layout
from flatnet_xp.losses import Loss

__all__ = ["Spec", "Views", "Workspace", "backward", "flat_gradient", "forward", "join", "layer_views", "loss_and_grad"]


@dataclass(frozen=True)
class Spec:
    """What a network computes, resolved once: layout, activations, namespace, kernels and dtype.

    Attributes
    ----------
    layout : Layout
    activations : tuple of Activation
        One per weight layer.
    xp : module
        The Array API namespace.
    ops : Ops
        The shim's kernels (``ops.mutable`` tells whether results are written in place).
    dtype : dtype of ``xp``
    device : device of ``xp``
    """

    layout: Layout
    activations: tuple[Activation, ...]
    xp: Any
    ops: Ops
    dtype: Any
    device: Any

    @classmethod
    def build(cls, layout: Layout, names: Sequence[str], xp: Any, ops: Ops, dtype: Any, device: Any) -> Spec:
        """The spec of a network with these activation ``names`` (looked up once here)."""
        return cls(layout, tuple(ACTIVATIONS[a] for a in names), xp, ops, dtype, device)


class Views(NamedTuple):
    """Per-layer matrices ``W[k]`` ``(L_{k+1}, L_k)``, their transposes ``Wt[k]`` and biases ``b[k]``."""

    W: list[Any]
    Wt: list[Any]
    b: list[Any]


def layer_views(spec: Spec, flat: Any) -> Views:
    """Layer matrices and biases of a flat ``[w, b]`` buffer (parameters or gradient).

    On mutable backends these are zero-copy views (``copy=False`` turns "this must be a view" into an
    enforced contract), made once and kept; on JAX, slices and reshapes inside the compiled program.
    """
    xp, lay = spec.xp, spec.layout
    kwargs = {"copy": False} if spec.ops.mutable else {}
    w_len = lay.w_len
    W = [xp.reshape(flat[lay.w_slice(k)], lay.shapes[k], **kwargs) for k in range(lay.n_layers)]
    b = [flat[w_len + lay.b_offsets[k] : w_len + lay.b_offsets[k + 1]] for k in range(lay.n_layers)]
    return Views(W, [xp.matrix_transpose(m) for m in W], b)


class Workspace:
    """Activation and delta buffers of one batch size (mutable backends: allocated once, reused).

    On immutable backends (JAX) the lists hold :data:`~flatnet_xp.backends.NO_OUT` and are filled with
    the new arrays each step computes (inside a traced program, where that costs nothing).
    """

    def __init__(self, spec: Spec, n: int) -> None:
        widths = spec.layout.sizes[1:]
        if spec.ops.mutable:
            xp = spec.xp
            self.acts = [xp.empty((n, w), dtype=spec.dtype, device=spec.device) for w in widths]
            self.deltas = [xp.empty((n, w), dtype=spec.dtype, device=spec.device) for w in widths]
            self.deltas_t: list[Any] | None = [xp.matrix_transpose(d) for d in self.deltas]
        else:
            self.acts = [NO_OUT] * len(widths)
            self.deltas = [NO_OUT] * len(widths)
            self.deltas_t = None
        self.n = n


def forward(spec: Spec, views: Views, x: Any, ws: Workspace) -> Any:
    """Outputs of the last layer for a batch ``x`` ``(n, L_1)``; every layer's activation is kept
    in ``ws.acts`` for :func:`backward`. Returns ``ws.acts[-1]``."""
    xp, ops = spec.xp, spec.ops
    a, acts = x, ws.acts
    for k, act in enumerate(spec.activations):
        z = ops.matmul(a, views.Wt[k], acts[k])
        z = ops.iadd(z, views.b[k])
        acts[k] = a = act.forward(xp, ops, z)
    return a


def backward(spec: Spec, views: Views, x: Any, ws: Workspace, grads: Views | None) -> Any:
    """Backpropagate ``ws.deltas[-1] = dL/dz_out`` (left there by the loss) through every layer.

    Parameters
    ----------
    grads : Views or None
        Views of the flat gradient buffer to write ``dW_k``, ``db_k`` into (mutable backends), or
        None to return new arrays (JAX).

    Returns
    -------
    Views or list
        ``grads`` itself when given (written in place), else the new arrays
        ``[dW_0, ..., dW_{L-1}, db_0, ..., db_{L-1}]`` (see :func:`flat_gradient`).
    """
    xp, ops = spec.xp, spec.ops
    acts, deltas, deltas_t = ws.acts, ws.deltas, ws.deltas_t
    n_layers = spec.layout.n_layers
    dW: list[Any] = [NO_OUT] * n_layers if grads is None else grads.W
    db: list[Any] = [NO_OUT] * n_layers if grads is None else grads.b
    new = grads is None
    dW_out, db_out = (list(dW), list(db)) if new else (dW, db)
    for k in range(n_layers - 1, -1, -1):
        d = deltas[k] = spec.activations[k].backward(xp, ops, deltas[k], acts[k])
        d_t = xp.matrix_transpose(d) if deltas_t is None else deltas_t[k]
        w_grad = ops.matmul(d_t, x if k == 0 else acts[k - 1], dW[k])
        b_grad = ops.sum0(d, db[k])
        if new:
            dW_out[k], db_out[k] = w_grad, b_grad
        if k:
            deltas[k - 1] = ops.matmul(d, views.W[k], deltas[k - 1])
    return dW_out + db_out if new else grads


def flat_gradient(spec: Spec, parts: list[Any]) -> Any:
    """The flat ``[dw, db]`` vector of :func:`backward`'s parts (a new array)."""
    return join(spec, parts)


def join(spec: Spec, parts: list[Any]) -> Any:
    """One flat vector of ``parts`` (each flattened), through the backend's fastest way."""
    xp, ops = spec.xp, spec.ops
    if ops.join is not None:
        return ops.join(parts)
    return xp.concat([xp.reshape(p, (-1,)) for p in parts])


def loss_and_grad(
    spec: Spec,
    views: Views,
    x: Any,
    y: Any,
    sw: Any,
    loss: Loss,
    ws: Workspace,
    grads: Views | None,
) -> tuple[Any, Any]:
    """Loss of the batch ``(x, y)`` (sample weights ``sw`` or None) and its gradient.

    Returns the loss as a 0-d array (no host synchronisation) and what :func:`backward` returns
    (``grads``, written in place, when given).
    """
    z = forward(spec, views, x, ws)
    value, ws.deltas[-1] = loss.value_and_grad(spec.xp, spec.ops, z, y, ws.deltas[-1], sw)
    return value, backward(spec, views, x, ws, grads)
