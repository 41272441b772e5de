"""scikit-learn's SGD and Adam updates (``sklearn/neural_network/_stochastic_optimizers.py``) on the
flat buffer.

They differ from ``torch.optim``'s, which the core optimizers follow, in two places that matter:
scikit-learn's Adam adds ``epsilon`` to ``sqrt(v)`` before the bias correction (the core adds it to
``sqrt(v_hat)``: weights whose gradient is about ``epsilon`` then move differently), and its SGD
velocity ``v <- momentum * v - lr * g`` keeps each step's own learning rate (the core's momentum
buffer is scaled by the current one: the same trajectory only while the rate is constant). Each
class overrides only :meth:`~flatnet_xp.optim.Optimizer.update`, the one function of flat arrays
every backend runs (the compiled JAX epoch included).

Both also apply scikit-learn's L2 exactly: ``alpha * w / m`` on the weights' gradient where ``m`` is
the size of the batch at hand, the smaller last batch of an epoch included (scaled by the mean
sample weight; scikit-learn divides by each batch's weight sum).
"""

from __future__ import annotations

from typing import Any

from flatnet_xp.optim import SGD, Adam, AdamW, Optimizer
from flatnet_xp.sklearn._monitor import EpochRate

__all__ = ["ScikitLearnAdam", "ScikitLearnSGD", "new_optimizer"]


class _BatchL2:
    """scikit-learn's L2 penalty: ``alpha / m * w`` added to the weights' gradient of a batch of ``m``.

    Which batch of its epoch an update is comes from the update count ``t`` (a traced scalar inside
    the compiled JAX epoch), so the rule is plain arithmetic on ``t``.
    """

    #: (alpha per unit of sample weight, batch size, batches per epoch, last batch size, phase of ``t``)
    l2: tuple[float, int, int, int, int] = (0.0, 1, 1, 1, 0)

    def set_l2(self, alpha: float, batch_size: int, n_samples: int, mean_weight: float = 1.0) -> None:
        """The penalty for the coming epochs of ``n_samples`` in batches of ``batch_size``."""
        n_batches = -(-n_samples // batch_size)
        t = self.t  # type: ignore[attr-defined]
        self.l2 = (alpha / mean_weight, batch_size, n_batches, n_samples - (n_batches - 1) * batch_size, t % n_batches)

    def _l2_grad(self, ops: Any, lo: int, p: Any, g: Any, tmp: Any, t: Any) -> Any:
        alpha, batch, n_batches, last, phase = self.l2
        n = self._weights(lo, p.shape[0]) if alpha else 0  # type: ignore[attr-defined]
        if not n:
            return g
        is_last = (t - 1 - phase) % n_batches == n_batches - 1
        decay = alpha / batch + (alpha / last - alpha / batch) * is_last
        return ops.slice_add(g, 0, n, ops.multiply(p[:n], decay, tmp[:n]))

    def hyperparameters(self) -> dict[str, Any]:
        return {**super().hyperparameters(), "l2": list(self.l2)}  # type: ignore[misc]


class ScikitLearnSGD(_BatchL2, SGD):
    """SGD with scikit-learn's velocity: ``v <- mu v - lr g``; ``p <- p + mu v - lr g`` (Nesterov) or
    ``p <- p + v``; L2 by :meth:`set_l2`."""

    def update(self, ops: Any, lo: int, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        g = self._l2_grad(ops, lo, p, g, tmp, t)
        if not self.momentum:
            return ops.isub(p, ops.multiply(g, lr, tmp))
        mu = self.momentum
        v = s["momentum_buffer"] = ops.isub(ops.imul(s["momentum_buffer"], mu), ops.multiply(g, lr, tmp))
        if not self.nesterov:
            return ops.iadd(p, v)
        p = ops.iadd(p, ops.multiply(v, mu, tmp))
        return ops.isub(p, ops.multiply(g, lr, tmp))


class ScikitLearnAdam(_BatchL2, Adam):
    """Adam as scikit-learn writes it: ``p <- p - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``;
    L2 by :meth:`set_l2`.

    :attr:`learning_rate` is scikit-learn's ``_optimizer.learning_rate``: that bias-corrected rate
    of the last update (``learning_rate_init`` before the first).
    """

    def update(self, ops: Any, lo: int, p: Any, g: Any, s: dict[str, Any], tmp: Any, lr: Any, t: Any) -> Any:
        g = self._l2_grad(ops, lo, p, g, tmp, t)
        b1, b2 = self.betas
        m = s["exp_avg"] = ops.iadd(ops.imul(s["exp_avg"], b1), ops.multiply(g, 1.0 - b1, tmp))
        v = s["exp_avg_sq"] = ops.iadd(ops.imul(s["exp_avg_sq"], b2), ops.imul(ops.multiply(g, g, tmp), 1.0 - b2))
        denom = ops.iadd(ops.sqrt(v, tmp), self.eps)
        return ops.isub(p, ops.imul(ops.divide(m, denom, tmp), lr * (1.0 - b2**t) ** 0.5 / (1.0 - b1**t)))

    @property
    def learning_rate(self) -> float:
        rate = super().learning_rate
        if self.t == 0:
            return rate
        b1, b2 = self.betas
        return float(rate * (1.0 - b2**self.t) ** 0.5 / (1.0 - b1**self.t))


def new_optimizer(est: Any) -> Optimizer:
    """The optimizer of ``est.solver`` with the estimator's settings: a new one each ``fit`` (kept
    across ``partial_fit`` calls), as scikit-learn does; its learning rate an :class:`EpochRate`."""
    schedule = est.learning_rate if est.solver == "sgd" else "constant"
    rate = EpochRate(float(est.learning_rate_init), schedule, float(est.power_t))
    if est.solver == "sgd":
        momentum = float(est.momentum)
        return ScikitLearnSGD(lr=rate, momentum=momentum, nesterov=bool(est.nesterovs_momentum) and momentum > 0)
    betas = (float(est.beta_1), float(est.beta_2))
    if est.solver == "adamw":
        return AdamW(lr=rate, betas=betas, eps=float(est.epsilon), weight_decay=float(est.alpha))
    return ScikitLearnAdam(lr=rate, betas=betas, eps=float(est.epsilon))
