"""The math of E networks at once: :mod:`flatnet_xp.functional`'s forward and backward passes over a
leading member axis, and the registered losses reduced per member.

Every layer of every member is a zero-copy ``(E, L_out, L_in)`` view of the ``(E, n_params)``
parameter buffer; a step is a handful of batched matmuls (``xp.matmul`` on stacked arrays). A batch
shared by every member is ``(b, L_1)`` and broadcast against the stacked weights (never copied E
times); per-member batches (own shuffle seeds, bootstrap) are ``(E, b, L_1)``.

The operations are the same kernels (:class:`~flatnet_xp.backends.Ops`) the single network uses:
written into preallocated buffers on mutable backends, returned as new arrays inside the compiled
JAX epoch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from flatnet_xp import functional as F
from flatnet_xp.activations import sigmoid
from flatnet_xp.backends import NO_OUT
from flatnet_xp.losses import LOSSES, Loss

__all__ = ["SUPPORTED_LOSSES", "Views", "Workspace", "backward", "forward", "join", "layer_views", "member_loss"]

SUPPORTED_LOSSES = tuple(LOSSES)


class Views(NamedTuple):
    """Per-layer stacks: ``W[k]`` ``(E, L_{k+1}, L_k)``, ``Wt[k]`` their transposes, ``b[k]`` ``(E, L_{k+1})``
    and ``b3[k]`` the same biases as ``(E, 1, L_{k+1})`` (broadcast over a batch)."""

    W: list[Any]
    Wt: list[Any]
    b: list[Any]
    b3: list[Any]


def layer_views(spec: F.Spec, flat: Any) -> Views:
    """Layer stacks of an ``(E, n_params)`` buffer (zero-copy views on mutable backends)."""
    xp, lay = spec.xp, spec.layout
    kwargs = {"copy": False} if spec.ops.mutable else {}
    e = int(flat.shape[0])
    w_len = lay.w_len
    W = [xp.reshape(flat[:, lay.w_slice(k)], (e, *lay.shapes[k]), **kwargs) for k in range(lay.n_layers)]
    b = [flat[:, w_len + lay.b_offsets[k] : w_len + lay.b_offsets[k + 1]] for k in range(lay.n_layers)]
    b3 = [xp.reshape(v, (e, 1, int(v.shape[1])), **kwargs) for v in b]
    return Views(W, [xp.matrix_transpose(m) for m in W], b, b3)


class Workspace:
    """Activation and delta buffers ``(E, n, width)`` of one batch size (mutable backends)."""

    def __init__(self, spec: F.Spec, e: int, n: int) -> None:
        widths = spec.layout.sizes[1:]
        if spec.ops.mutable:
            xp = spec.xp
            self.acts = [xp.empty((e, n, w), dtype=spec.dtype, device=spec.device) for w in widths]
            self.deltas = [xp.empty((e, n, w), dtype=spec.dtype, device=spec.device) for w in widths]
        else:
            self.acts = [NO_OUT] * len(widths)
            self.deltas = [NO_OUT] * len(widths)


def _matmul(ops: Any, a: Any, b: Any, out: Any) -> Any:
    """``a @ b`` over the member axis; an inner dimension of 1 (one output, one input, batches of
    one) is the outer product ``a * b``, the same numbers, which NumPy's stacked matmul computes
    outside BLAS about 15x slower."""
    if int(a.shape[-1]) == 1:
        return ops.multiply(a, b, out)
    return ops.matmul(a, b, out)


def forward(spec: F.Spec, views: Views, x: Any, ws: Workspace) -> Any:
    """Outputs ``(E, n, L_n)`` of every member for ``x`` ``(n, L_1)`` (shared) or ``(E, n, L_1)``."""
    xp, ops = spec.xp, spec.ops
    a, acts = x, ws.acts
    for k, act in enumerate(spec.activations):
        z = _matmul(ops, a, views.Wt[k], acts[k])
        z = ops.iadd(z, views.b3[k])
        acts[k] = a = act.forward(xp, ops, z)
    return a


def backward(spec: F.Spec, views: Views, x: Any, ws: Workspace, grads: Views | None) -> list[Any]:
    """Backpropagate ``ws.deltas[-1]`` (left by :func:`member_loss`); writes into ``grads`` when given,
    else returns the new parts ``[dW_0.., db_0..]`` (JAX)."""
    xp, ops = spec.xp, spec.ops
    acts, deltas = ws.acts, ws.deltas
    n = spec.layout.n_layers
    dW: list[Any] = [None] * n if grads is None else list(grads.W)
    db: list[Any] = [None] * n if grads is None else list(grads.b)
    for k in range(n - 1, -1, -1):
        d = deltas[k] = spec.activations[k].backward(xp, ops, deltas[k], acts[k])
        a_prev = x if k == 0 else acts[k - 1]
        dW[k] = _matmul(ops, xp.matrix_transpose(d), a_prev, dW[k])
        db[k] = ops.sum0(xp.permute_dims(d, (1, 0, 2)), db[k])  # over the batch, into the gradient's view
        if k:
            deltas[k - 1] = _matmul(ops, d, views.W[k], deltas[k - 1])
    return dW + db


def join(spec: F.Spec, parts: list[Any]) -> Any:
    """The ``(E, n_params)`` gradient of :func:`backward`'s new parts (JAX)."""
    xp = spec.xp
    e = int(parts[0].shape[0])
    return xp.concat([xp.reshape(p, (e, -1)) for p in parts], axis=1)


def _log_softmax(xp: Any, z: Any) -> Any:
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def _weighted(terms: Any, sw: Any) -> Any:
    return terms if sw is None else terms * sw


def check_loss(loss: Loss) -> None:
    """Refuse a loss whose per-member form is not written here (a user-defined :class:`Loss`)."""
    known = LOSSES.get(loss.name)
    if known is None or known._value_and_grad is not loss._value_and_grad:
        raise ValueError(f"loss: ensembles train with one of {sorted(LOSSES)} (optionally scaled), got {loss!r}")


def member_loss(loss: Loss, xp: Any, ops: Any, z: Any, y: Any, out: Any, sw: Any, grad: bool = True) -> tuple[Any, Any]:
    """Per-member losses ``(E,)`` of outputs ``z`` ``(E, n, L)`` and, with ``grad``, ``dL_i/dz``
    (written into ``out``): each member's value is :mod:`flatnet_xp.losses`' mean over its batch."""
    n, width = int(z.shape[-2]), int(z.shape[-1])
    size, scale, name = n * width, loss.scale, loss.name
    axes = (-2, -1)
    if name == "mse":
        if not grad:
            r = z - y
            return xp.sum(_weighted(r * r, sw), axis=axes) * (scale / size), None
        r = ops.subtract(z, y, out)
        if sw is None:
            value = xp.sum(r * r, axis=axes)
            value = value * (scale / size) if scale != 1.0 else value / size
            return value, ops.imul(r, 2.0 * scale / size)
        value = xp.sum(sw * r * r, axis=axes) * (scale / size)
        return value, ops.imul(r, sw * (2.0 * scale / size))
    if name == "cross_entropy":
        logp = _log_softmax(xp, z)
        factor = scale / n
        value = -xp.sum(_weighted(y * logp, sw), axis=axes) * factor
        if not grad:
            return value, None
        g = xp.sum(y, axis=-1, keepdims=True) * xp.exp(logp) - y
        return value, ops.copy(_weighted(g, sw) * factor, out)
    factor = scale / size
    if name == "bce":
        terms = xp.maximum(z, 0.0) - z * y + xp.log1p(xp.exp(-xp.abs(z)))
        g = None if not grad else sigmoid(xp, z) - y
    else:  # poisson
        positive = y > 0
        ylogy = xp.where(positive, y * xp.log(xp.where(positive, y, 1.0)), 0.0)
        terms = xp.exp(z) - y * z + ylogy - y
        g = None if not grad else xp.exp(z) - y
    value = xp.sum(_weighted(terms, sw), axis=axes) * factor
    return value, None if g is None else ops.copy(_weighted(g, sw) * factor, out)
