"""``n_models > 1``: the estimators train a deep ensemble in ONE ``(E, n_params)`` buffer.

Members differ by their initial weights (scikit-learn's initialization, each from its own seed drawn
from ``random_state``) and, with ``shuffle``, by their sample orders; ``bootstrap=True`` gives each
its own bootstrap sample. They train together with one :class:`~flatnet_xp.FlatEnsemble` ``fit``
(the core optimizers with scikit-learn's hyperparameters: Adam/AdamW/SGD, ``alpha`` as coupled L2
``alpha / batch_size``, as scikit-learn adds ``alpha * W / batch_size`` to each batch's gradient;
the ``learning_rate`` schedules other than "constant" are refused). With ``early_stopping`` each
member stops on its own after ``n_iter_no_change`` epochs without improving its validation loss by
``tol``, and keeps its best weights. Predictions average the members' outputs after the output
activation (the mean probability); the regressor's ``predict(X, return_std=True)`` also returns
their spread.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from flatnet_xp.activations import sigmoid
from flatnet_xp.ensemble import FlatEnsemble
from flatnet_xp.history import DivergenceError
from flatnet_xp.losses import LOSSES, softmax
from flatnet_xp.network import FlatMLP
from flatnet_xp.optim import SGD, Adam, AdamW, Optimizer
from flatnet_xp.sklearn._losses import scikit_learn_loss
from flatnet_xp.sklearn._params import random_state_of
from flatnet_xp.sklearn._plan import NONFINITE_MESSAGE, Plan, warn_max_iter

__all__ = ["ensemble_outputs", "fit_members"]

#: scikit-learn's log losses as the core losses with the same gradients.
_CORE_LOSS = {"log_loss": "cross_entropy", "binary_log_loss": "bce"}


def _optimizer(est: Any, batch: float) -> Optimizer:
    if est.learning_rate != "constant":
        raise ValueError(f"learning_rate: n_models > 1 trains with a constant learning rate, got {est.learning_rate!r}")
    lr, alpha = float(est.learning_rate_init), float(est.alpha)
    if est.solver == "adamw":
        return AdamW(lr, betas=(float(est.beta_1), float(est.beta_2)), eps=float(est.epsilon), weight_decay=alpha)
    if est.solver == "adam":
        return Adam(
            lr, betas=(float(est.beta_1), float(est.beta_2)), eps=float(est.epsilon), weight_decay=alpha / batch
        )
    return SGD(lr, momentum=float(est.momentum), nesterov=bool(est.nesterovs_momentum) and est.momentum > 0,
               weight_decay=alpha / batch)  # fmt: skip


def _members(est: Any, plan: Plan) -> FlatEnsemble:
    """The first member is the network the single-model path builds; the others get their own seeds."""
    net = plan.net
    rs = random_state_of(est)
    seeds = rs.randint(0, 2**31 - 1, size=int(est.n_models) - 1)
    others = [
        FlatMLP(
            net.layout.sizes,
            net.activations,
            backend=net.flat_params.backend.name,
            device=net.device,
            dtype=net.dtype_name,
            seed=int(s),
            init="sklearn",
        )
        for s in seeds
    ]
    return FlatEnsemble.from_members([net, *others])


def fit_members(est: Any, plan: Plan, incremental: bool) -> None:
    """Train (or, with ``warm_start``/``partial_fit``, continue) the ensemble ``est.ensemble_``."""
    if plan.first or not hasattr(est, "ensemble_"):
        est.ensemble_ = _members(est, plan)
        # scikit-learn's L2 is alpha * W / (sum of the batch's weights): per unit weight, as repeated rows
        mean_weight = 1.0 if plan.sample_weight is None else float(np.mean(plan.sample_weight))
        est._ensemble_optimizer = _optimizer(est, plan.batch_size * mean_weight)
        est.loss_curve_, est.n_iter_ = [], 0
        est.validation_scores_ = [] if est.early_stopping else None
        est.validation_loss_curve_ = [] if est.early_stopping else None
    ens = est.ensemble_
    # The core losses with scikit-learn's gradients (the ensembles train the core's losses; the log
    # losses differ from scikit-learn's only in its clipping of the reported value).
    loss, factor = scikit_learn_loss(plan.targets.loss, plan.targets.n_outputs)
    if plan.targets.loss in _CORE_LOSS:
        loss = LOSSES[_CORE_LOSS[plan.targets.loss]].scaled(loss.scale)
    patience = None
    if est.early_stopping and math.isfinite(float(est.n_iter_no_change)):
        patience = int(est.n_iter_no_change)
    seeds = [int(s) for s in random_state_of(est).randint(0, 2**31 - 1, size=int(est.n_models))]
    epochs = 1 if incremental else int(est.max_iter)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*diverged.*", category=RuntimeWarning)
            histories = ens.fit(
                plan.X, plan.T, epochs=epochs, batch_size=plan.batch_size, optimizer=est._ensemble_optimizer,
                loss=loss, sample_weight=plan.sample_weight, shuffle=bool(est.shuffle), seed=seeds,
                validation_data=plan.val, patience=patience, min_delta=float(est.tol),
                bootstrap=bool(est.bootstrap), progress=False,
            )  # fmt: skip
    except DivergenceError as exc:
        raise ValueError(NONFINITE_MESSAGE) from exc
    n = max(h.epochs for h in histories)
    est.loss_curve_ += [factor * float(np.mean([h.loss[k] for h in histories if k < h.epochs])) for k in range(n)]
    est.n_iter_ += n
    est.t_ = getattr(est, "t_", 0) + n * int(plan.X.shape[0])
    est.loss_ = est.loss_curve_[-1]
    est.best_loss_ = None if est.early_stopping else min(est.loss_curve_)
    if est.early_stopping:
        est.validation_loss_curve_ += [
            factor * float(np.mean([h.val_loss[k] for h in histories if k < len(h.val_loss)])) for k in range(n)
        ]
        est.validation_scores_ += [
            float(np.mean([h.val_score[k] for h in histories if k < len(h.val_score)])) for k in range(n)
        ]
        est.best_validation_score_ = max(est.validation_scores_)
    else:
        est.best_validation_score_ = None
    est.net_ = ens.member(0)
    est.diverged_members_ = list(getattr(ens, "diverged_", []))
    if not incremental and n == est.max_iter and not all(h.stopped_early for h in histories):
        warn_max_iter(est.max_iter, stacklevel=5)


def ensemble_outputs(est: Any, X: Any, *, return_std: bool = False) -> Any:
    """The members' mean output after the output activation ``(n, n_outputs)`` (and their spread)."""
    ens = est.ensemble_
    xp = ens.xp
    z = ens.predict(X, members=True)  # (E, n, L)
    if est.out_activation_ == "exp":
        z = xp.exp(z)
    elif est.out_activation_ == "logistic":
        z = sigmoid(xp, z)
    elif est.out_activation_ == "softmax":
        z = xp.stack([softmax(xp, z[i, ...]) for i in range(int(z.shape[0]))], axis=0)
    mean = xp.mean(z, axis=0)
    return (mean, xp.std(z, axis=0)) if return_std else mean
