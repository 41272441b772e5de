"""Exchange with PyTorch: ``nn.Sequential`` and ``state_dict`` in both directions, no transpose.

Our weight layer ``k`` is ``(L_out, L_in)`` row-major, exactly ``nn.Linear.weight``, so weights
are copied as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from flatnet_xp._compat import to_numpy
from flatnet_xp._validation import describe

if TYPE_CHECKING:
    from flatnet_xp.network import FlatMLP

__all__ = ["from_torch", "to_torch", "torch_state_dict"]


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("PyTorch exchange needs torch: pip install 'flatnet_xp[torch]'") from exc
    return torch


def _modules(torch: Any) -> dict[str, Any]:
    nn = torch.nn
    return {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}


def to_torch(net: FlatMLP) -> Any:
    """``nn.Sequential`` of ``nn.Linear`` layers each followed by its activation (none for identity)."""
    torch = _torch()
    mods = _modules(torch)
    layers: list[Any] = []
    dtype = getattr(torch, net.dtype_name)
    for k, ((n_out, n_in), act) in enumerate(zip(net.layout.shapes, net.activations, strict=True)):
        lin = torch.nn.Linear(n_in, n_out, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(to_numpy(net.weight(k)))))
            lin.bias.copy_(torch.from_numpy(np.array(to_numpy(net.bias(k)))))
        layers.append(lin)
        if act != "identity":
            layers.append(mods[act]())
    return torch.nn.Sequential(*layers)


def torch_state_dict(net: FlatMLP) -> dict[str, Any]:
    """The ``state_dict`` of :func:`to_torch`'s Sequential."""
    return dict(to_torch(net).state_dict())


def _from_sequential(module: Any, torch: Any) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    mods = _modules(torch)
    names_of = {cls: name for name, cls in mods.items()}
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    acts: list[str] = []
    pending = False  # True right after an nn.Linear whose activation has not been seen yet
    for i, m in enumerate(module):
        if isinstance(m, torch.nn.Linear):
            if m.bias is None:
                raise ValueError(f"module[{i}]: expected nn.Linear with a bias, got bias=False")
            weights.append(m.weight.detach().cpu().numpy())
            biases.append(m.bias.detach().cpu().numpy())
            acts.append("identity")
            pending = True
        elif type(m) in names_of or isinstance(m, torch.nn.Identity):
            if not pending:
                raise ValueError(f"module[{i}]: expected an activation right after an nn.Linear, got {m}")
            if isinstance(m, torch.nn.LeakyReLU) and m.negative_slope != 0.01:
                raise ValueError(f"module[{i}]: only LeakyReLU(0.01) is supported, got slope {m.negative_slope}")
            acts[-1] = "identity" if isinstance(m, torch.nn.Identity) else names_of[type(m)]
            pending = False
        else:
            raise ValueError(
                f"module[{i}]: expected nn.Linear or one of Sigmoid, Tanh, ReLU, LeakyReLU, Identity, got {m}"
            )
    if not weights:
        raise ValueError("module: expected at least one nn.Linear")
    return weights, biases, acts


def _from_state_dict(state: Mapping[str, Any]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    keys = list(state)
    wkeys = [k for k in keys if k.endswith("weight")]
    bkeys = [k for k in keys if k.endswith("bias")]
    if not wkeys or len(wkeys) != len(bkeys) or len(keys) != 2 * len(wkeys):
        raise ValueError(f"state_dict: expected pairs of '<i>.weight' and '<i>.bias' entries, got keys {keys}")
    weights = [np.asarray(to_numpy(state[k])) for k in wkeys]
    biases = [np.asarray(to_numpy(state[k])) for k in bkeys]
    return weights, biases


def from_torch(
    module: Any,
    activations: str | Sequence[str] | None = None,
    *,
    backend: str | ModuleType = "numpy",
    dtype: str | None = None,
    device: Any = None,
) -> FlatMLP:
    """A FlatMLP from an ``nn.Sequential`` (activations read from its modules) or a ``state_dict``.

    Raises
    ------
    ValueError
        Unsupported modules, inconsistent shapes, or a state_dict without ``activations``.
    TypeError
        Neither a Sequential nor a mapping.
    """
    from flatnet_xp.network import FlatMLP

    torch = _torch()
    if isinstance(module, torch.nn.Sequential):
        weights, biases, acts = _from_sequential(module, torch)
        if activations is not None:
            raise ValueError("activations: read from the Sequential's modules; pass it only with a state_dict")
        chosen: str | Sequence[str] = acts
    elif isinstance(module, Mapping):
        weights, biases = _from_state_dict(module)
        if activations is None:
            raise ValueError("activations: required with a state_dict (it holds no activation modules)")
        chosen = activations
    else:
        raise TypeError(f"module: expected torch.nn.Sequential or a state_dict, got {describe(module)}")
    sizes = [int(weights[0].shape[1])] + [int(w.shape[0]) for w in weights]
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        if w.ndim != 2 or w.shape[1] != sizes[k] or b.shape != (w.shape[0],):
            raise ValueError(
                f"layer {k}: weight {tuple(w.shape)} / bias {tuple(b.shape)} do not chain from width {sizes[k]}"
            )
    net_dtype = dtype or ("float64" if weights[0].dtype == np.float64 else "float32")
    net = FlatMLP(sizes, chosen, backend=backend, dtype=net_dtype, device=device)
    net.set_params(np.concatenate([w.ravel() for w in weights]), np.concatenate(biases))
    return net
