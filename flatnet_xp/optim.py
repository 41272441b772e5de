"""Optimizers on the flat parameter buffer: each update is a handful of whole-buffer operations.

All state is flat arrays the length of the parameters, whatever the depth of the network. The
update of each optimizer is ONE function of flat arrays, :meth:`Optimizer.update`, that returns the
new parameters (and stores new state arrays): on NumPy, CuPy and PyTorch it runs in place through the
``out=`` shim with ONE preallocated scratch buffer, so a step allocates nothing parameter-sized; on
JAX the same function is traced into the compiled epoch (:mod:`flatnet_xp.compiled`). Weight decay
(L2 or decoupled) applies to the weights ``w`` only; biases are exempt (``w`` is the first ``w_len``
entries of the buffer).

The formulas follow ``torch.optim`` exactly (the tests compare against it step by step).

Finiteness: an update only subtracts from and scales the parameters and its state, so once a value
is NaN or infinite it stays so for the rest of the epoch. ``fit`` therefore checks the parameters
and the state once per epoch (:meth:`Optimizer.all_finite`, no per-step cost) besides each step's
loss, and raises :class:`~flatnet_xp.DivergenceError` having restored the state from before the
failing step, so no update can leave non-finite parameters behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from flatnet_xp._compat import precision
from flatnet_xp._shim import NO_OUT, Blocks
from flatnet_xp._validation import check_real, describe
from flatnet_xp.schedules import Constant, Schedule, as_schedule, checked_lr, describe_schedule

if TYPE_CHECKING:
    from flatnet_xp.network import FlatMLP

__all__ = ["OPTIMIZERS", "SGD", "Adam", "AdamW", "Optimizer", "RMSprop"]


class Optimizer:
    """Base class: learning rate (or schedule), optional global gradient-norm clipping, flat state.

    Parameters
    ----------
    lr : float or Schedule
        Learning rate, or a schedule of the update count (see :mod:`flatnet_xp.schedules`).
    clip_norm : float, optional
        Rescale the whole flat gradient to at most this L2 norm before the update
        (one reduction over the buffer; PyTorch's ``clip_grad_norm_`` with its 1e-6 guard).

    Notes
    -----
    The optimizer keeps its state (``t`` and the flat buffers) between ``fit`` calls on the same
    network, like a ``torch.optim`` optimizer; used with another network it starts afresh.
    """

    name: ClassVar[str] = "optimizer"
    #: Names of the persistent flat state buffers (saved in checkpoints).
    buffer_names: tuple[str, ...] = ()

    def __init__(self, lr: Schedule | float, clip_norm: float | None = None) -> None:
        self.lr = as_schedule(lr)
        self.clip_norm = None if clip_norm is None else check_real("clip_norm", clip_norm, minimum=0.0, open_min=True)
        self.t = 0
        self.state: dict[str, Any] = {}
        self._net_id: int | None = None
        self._w_len = 0
        self._scratch: list[Any] = []
        self._blocks = Blocks(0, enabled=False)

    # ------------------------------------------------------------------ state
    def hyperparameters(self) -> dict[str, Any]:
        """JSON-serialisable hyperparameters (saved in checkpoints, compared on resume)."""
        return {"lr": describe_schedule(self.lr), "clip_norm": self.clip_norm}

    @property
    def learning_rate(self) -> float:
        """The learning rate the next update will use."""
        return checked_lr(self.lr, self.t)

    def bind(self, net: FlatMLP) -> None:
        """Attach to ``net``: allocate zeroed state buffers unless already bound to it.

        An unpickled optimizer keeps its state for the first network of the right size it meets.
        """
        if self._net_id == id(net) and self._scratch:
            return
        with precision(net._be, net.dtype):
            self._bind(net)

    def _bind(self, net: FlatMLP) -> None:
        xp, n = net.xp, net.layout.n_params
        keep = self._net_id is None and self.state and all(tuple(v.shape) == (n,) for v in self.state.values())
        if keep:
            self.state = {name: net._be.asarray(v, dtype=net.dtype) for name, v in self.state.items()}
        else:
            self.state = {name: xp.zeros_like(net.params) for name in self.buffer_names}
            self.t = 0
        self._blocks = Blocks(n, enabled=net.backend == "numpy")
        if net._be.mutable:
            self._scratch = [
                xp.empty(self._blocks.scratch_size(), dtype=net.dtype, device=net.device)
                for _ in range(self._blocks.threads)
            ]
        else:
            self._scratch = [NO_OUT]
        self._net_id = id(net)
        self._w_len = net.layout.w_len

    def __getstate__(self) -> dict[str, Any]:
        """Hyperparameters, step count and state (as NumPy); scratch and thread pool are rebuilt on bind."""
        from flatnet_xp._compat import to_numpy

        state = dict(self.__dict__)
        state["state"] = {k: to_numpy(v).copy() for k, v in self.state.items()}
        state.update(_net_id=None, _scratch=[], _blocks=Blocks(0, enabled=False))
        return state

    def state_buffers(self) -> dict[str, Any]:
        """The persistent state buffers by name."""
        return dict(self.state)

    # ------------------------------------------------------------------ update
    def clip(self, xp: Any, ops: Any, g: Any) -> Any:
        """``g`` rescaled to norm at most ``clip_norm`` (unchanged without clipping)."""
        if self.clip_norm is None:
            return g
        norm = xp.sqrt(xp.vecdot(g, g))
        return ops.imul(g, xp.clip(self.clip_norm / (norm + 1e-6), max=1.0))

    def step(self, net: FlatMLP) -> None:
        """Apply one update to ``net.params`` from ``net.grads`` (both flat), in place.

        Raises
        ------
        ValueError
            The learning-rate schedule returned a non-finite or negative value (before any change).
        """
        be = net._be
        if not be.mutable:
            with precision(be, net.dtype):
                return self._step(net)
        return self._step(net)

    def _step(self, net: FlatMLP) -> None:
        if self._net_id != id(net) or not self._scratch:
            self.bind(net)
        be = net._be
        ops, xp = be.ops, be.xp
        lr = self.lr.lr if type(self.lr) is Constant else checked_lr(self.lr, self.t)  # constants were checked
        g = self.clip(xp, ops, net.grads)
        self.t += 1
        p, state, scratch, t = net.params, self.state, self._scratch, self.t
        if not self._blocks.blocked:
            p = self.update(ops, 0, p, g, state, scratch[0], lr, t)
            if not be.mutable:
                net.params = p
            return

        def block(lo: int, hi: int, worker: int) -> None:
            views = {name: buf[lo:hi] for name, buf in state.items()}
            self.update(ops, lo, p[lo:hi], g[lo:hi], views, scratch[worker][: hi - lo], lr, t)

        self._blocks.run(block)

    def all_finite(self, net: FlatMLP) -> bool:
        """True when the parameters and every state buffer hold only finite values.

        One summation per buffer (finite sum: all finite); only when a sum is not finite, which
        large finite values can also cause, the exact element-wise test.
        """
        xp, ops = net.xp, net._be.ops
        for buf in (net.params, *self.state.values()):
            if not bool(xp.isfinite(ops.total(buf))) and not bool(xp.all(xp.isfinite(buf))):
                return False
        return True

    def update(self, ops: Any, lo: int, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        """The update of the slice ``[lo, lo + len(p))`` of the flat buffers; returns the new ``p``.

        ``g`` and ``s`` (state buffers by name; new arrays are stored back into ``s``) are the same
        slice, ``tmp`` scratch of that length (:data:`~flatnet_xp._shim.NO_OUT` on JAX), ``lr`` the
        learning rate and ``t`` the 1-based update count (Python numbers, or traced scalars on JAX).
        """
        raise NotImplementedError

    def _weights(self, lo: int, size: int) -> int:
        """How many leading entries of the slice starting at ``lo`` are weights (not biases)."""
        return max(0, min(size, self._w_len - lo))

    def _add_l2(self, ops: Any, lo: int, p: Any, g: Any, tmp: Any, weight_decay: float) -> Any:
        """``g_w += weight_decay * w`` on the weights only (coupled L2, as torch's weight_decay)."""
        n = self._weights(lo, p.shape[0]) if weight_decay else 0
        if n:
            g = ops.slice_add(g, 0, n, ops.multiply(p[:n], weight_decay, tmp[:n]))
        return g

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``b <- mu b + g`` (``b`` starts at 0, so ``b = g`` at the first step), then
    ``p <- p - lr (g + mu b)`` with Nesterov or ``p <- p - lr b`` without; Sutskever et al., 2013,
    "On the importance of initialization and momentum in deep learning". ``weight_decay`` adds
    ``wd * w`` to the weights' gradient.
    """

    name = "sgd"

    def __init__(
        self,
        lr: Schedule | float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, clip_norm)
        self.momentum = check_real("momentum", momentum, minimum=0.0, maximum=1.0)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov: expected a bool, got {describe(nesterov)}")
        if nesterov and self.momentum == 0.0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0")
        self.nesterov = nesterov
        self.weight_decay = check_real("weight_decay", weight_decay, minimum=0.0)
        self.buffer_names = ("momentum_buffer",) if self.momentum else ()

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
        }

    def update(self, ops: Any, lo: int, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        g = self._add_l2(ops, lo, p, g, tmp, self.weight_decay)
        if self.momentum:
            mu = self.momentum
            buf = s["momentum_buffer"] = ops.iadd(ops.imul(s["momentum_buffer"], mu), g)
            g = ops.iadd(ops.multiply(buf, mu, tmp), g) if self.nesterov else buf
        return ops.isub(p, ops.multiply(g, lr, tmp))


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization").

    ``m <- b1 m + (1-b1) g``, ``v <- b2 v + (1-b2) g^2``,
    ``p <- p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)``.
    ``weight_decay`` is coupled L2 on the weights (for decoupled decay use :class:`AdamW`).
    """

    name = "adam"
    buffer_names = ("exp_avg", "exp_avg_sq")

    def __init__(
        self,
        lr: Schedule | float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, clip_norm)
        if not isinstance(betas, tuple | list) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair of numbers in [0, 1), got {describe(betas)}")
        self.betas = (
            check_real("betas[0]", betas[0], minimum=0.0, maximum=1.0 - 1e-12),
            check_real("betas[1]", betas[1], minimum=0.0, maximum=1.0 - 1e-12),
        )
        self.eps = check_real("eps", eps, minimum=0.0, open_min=True)
        self.weight_decay = check_real("weight_decay", weight_decay, minimum=0.0)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }

    def update(self, ops: Any, lo: int, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        g = self._add_l2(ops, lo, p, g, tmp, self.weight_decay)
        return self._adam(ops, p, g, s, tmp, lr, t)

    def _adam(self, ops: Any, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        b1, b2 = self.betas
        m = s["exp_avg"] = ops.iadd(ops.imul(s["exp_avg"], b1), ops.multiply(g, 1.0 - b1, tmp))
        sq = ops.imul(ops.multiply(g, g, tmp), 1.0 - b2)
        v = s["exp_avg_sq"] = ops.iadd(ops.imul(s["exp_avg_sq"], b2), sq)
        denom = ops.iadd(ops.imul(ops.sqrt(v, tmp), 1.0 / (1.0 - b2**t) ** 0.5), self.eps)
        upd = ops.imul(ops.divide(m, denom, tmp), lr / (1.0 - b1**t))
        return ops.isub(p, upd)


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay on the weights only (biases exempt).

    ``w <- w (1 - lr wd)`` then the Adam update (Loshchilov & Hutter, 2019, "Decoupled Weight Decay
    Regularization").
    """

    name = "adamw"

    def __init__(
        self,
        lr: Schedule | float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, betas, eps, weight_decay, clip_norm)

    def update(self, ops: Any, lo: int, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        n = self._weights(lo, p.shape[0]) if self.weight_decay else 0
        if n:
            p = ops.slice_mul(p, 0, n, 1.0 - lr * self.weight_decay)
        return self._adam(ops, p, g, s, tmp, lr, t)


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012, Lecture 6e of "Neural Networks for Machine Learning").

    ``v <- a v + (1-a) g^2``; ``p <- p - lr g / (sqrt(v) + eps)`` (``centered`` subtracts the squared
    running mean of ``g`` inside the root; ``momentum`` accumulates the step as torch does).
    """

    name = "rmsprop"

    def __init__(
        self,
        lr: Schedule | float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        momentum: float = 0.0,
        centered: bool = False,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, clip_norm)
        self.alpha = check_real("alpha", alpha, minimum=0.0, maximum=1.0)
        self.eps = check_real("eps", eps, minimum=0.0, open_min=True)
        self.momentum = check_real("momentum", momentum, minimum=0.0, maximum=1.0)
        if not isinstance(centered, bool):
            raise TypeError(f"centered: expected a bool, got {describe(centered)}")
        self.centered = centered
        self.weight_decay = check_real("weight_decay", weight_decay, minimum=0.0)
        self.buffer_names = (
            ("square_avg",) + (("grad_avg",) if centered else ()) + (("momentum_buffer",) if self.momentum else ())
        )

    def hyperparameters(self) -> dict[str, Any]:
        return {
            **super().hyperparameters(),
            "alpha": self.alpha,
            "eps": self.eps,
            "momentum": self.momentum,
            "centered": self.centered,
            "weight_decay": self.weight_decay,
        }

    def update(self, ops: Any, lo: int, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        g = self._add_l2(ops, lo, p, g, tmp, self.weight_decay)
        a = self.alpha
        sq = ops.imul(ops.multiply(g, g, tmp), 1.0 - a)
        v = s["square_avg"] = ops.iadd(ops.imul(s["square_avg"], a), sq)
        if self.centered:
            ga = s["grad_avg"] = ops.iadd(ops.imul(s["grad_avg"], a), ops.multiply(g, 1.0 - a, tmp))
            var = ops.subtract(v, ops.multiply(ga, ga, tmp), tmp)
            denom = ops.sqrt(var, tmp)
        else:
            denom = ops.sqrt(v, tmp)
        step = ops.divide(g, ops.iadd(denom, self.eps), tmp)
        if self.momentum:
            buf = s["momentum_buffer"] = ops.iadd(ops.imul(s["momentum_buffer"], self.momentum), step)
            step = ops.multiply(buf, lr, tmp)
        else:
            step = ops.imul(step, lr)
        return ops.isub(p, step)


#: Optimizer classes by name (CLI, checkpoints, scikit-learn estimators).
OPTIMIZERS: dict[str, type[Optimizer]] = {c.name: c for c in (SGD, Adam, AdamW, RMSprop)}
