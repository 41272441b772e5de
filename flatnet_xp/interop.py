"""Exchange with PyTorch: ``nn.Sequential`` and ``state_dict`` in both directions, no transpose.

Our weight layer ``k`` is ``(L_out, L_in)`` row-major, exactly ``nn.Linear.weight``, so weights
are copied as they are. This module speaks arrays: :func:`read_torch` returns the layer sizes,
activations and flat parameters a network is built from, :func:`to_torch` builds a Sequential from
them (``FlatMLP.from_torch`` and ``FlatMLP.to_torch`` are the front doors).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flatnet_xp._validation import describe
from flatnet_xp.backends import to_numpy
from flatnet_xp.layout import Layout

__all__ = ["TorchWeights", "read_torch", "to_torch"]


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("PyTorch exchange needs torch: pip install 'flatnet_xp[torch]'") from exc
    return torch


def _modules(torch: Any) -> dict[str, Any]:
    nn = torch.nn
    return {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}


def to_torch(layout: Layout, activations: Sequence[str], dtype_name: str, flat: np.ndarray) -> Any:
    """``nn.Sequential`` of ``nn.Linear`` layers each followed by its activation (none for identity),
    holding the flat parameters ``flat`` (host, ``[w, b]``), on the CPU in ``dtype_name``."""
    torch = _torch()
    mods = _modules(torch)
    layers: list[Any] = []
    dtype = getattr(torch, dtype_name)
    w_len = layout.w_len
    for k, ((n_out, n_in), act) in enumerate(zip(layout.shapes, activations, strict=True)):
        lin = torch.nn.Linear(n_in, n_out, dtype=dtype)
        w = flat[layout.w_slice(k)].reshape(n_out, n_in)
        b = flat[w_len + layout.b_offsets[k] : w_len + layout.b_offsets[k + 1]]
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(w)))
            lin.bias.copy_(torch.from_numpy(np.array(b)))
        layers.append(lin)
        if act != "identity":
            layers.append(mods[act]())
    return torch.nn.Sequential(*layers)


@dataclass(frozen=True)
class TorchWeights:
    """What a network is built from: layer sizes, activations (None: not known), flat ``w`` and ``b``
    (host arrays), and the dtype the weights came in (``float64``, else ``float32``)."""

    sizes: list[int]
    activations: list[str] | None
    w: np.ndarray
    b: np.ndarray
    dtype_name: str


def _host(name: str, tensor: Any) -> np.ndarray:
    """A parameter tensor as a NumPy array (bfloat16/float16 widened exactly to float32)."""
    if getattr(getattr(tensor, "device", None), "type", None) == "meta":
        raise ValueError(
            f"module: {name} is on the meta device (it has a shape but no values); materialize the module "
            "(e.g. module.to_empty(device='cpu') and load its weights) first"
        )
    try:
        return np.asarray(to_numpy(tensor))
    except (TypeError, RuntimeError) as exc:
        raise TypeError(f"module: {name} cannot be read as a float array ({describe(tensor)}): {exc}") from None


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
            weights.append(_host(f"module[{i}].weight", m.weight))
            biases.append(_host(f"module[{i}].bias", m.bias))
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
    weights = [_host(f"state_dict[{k!r}]", state[k]) for k in wkeys]
    biases = [_host(f"state_dict[{k!r}]", state[k]) for k in bkeys]
    return weights, biases


def read_torch(module: Any) -> TorchWeights:
    """Layer sizes, activations and flat parameters of an ``nn.Sequential`` (activations read from
    its modules) or a ``state_dict`` (activations None: the caller must give them).

    Raises
    ------
    ValueError
        Unsupported modules, inconsistent shapes, parameters on the meta device.
    TypeError
        Neither a Sequential nor a mapping; parameters that are not float arrays.
    """
    torch = _torch()
    acts: list[str] | None = None
    if isinstance(module, torch.nn.Sequential):
        weights, biases, acts = _from_sequential(module, torch)
    elif isinstance(module, Mapping):
        weights, biases = _from_state_dict(module)
    else:
        raise TypeError(f"module: expected torch.nn.Sequential or a state_dict, got {describe(module)}")
    sizes = [int(weights[0].shape[1])] + [int(w.shape[0]) for w in weights]
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        if w.ndim != 2 or w.shape[1] != sizes[k] or b.shape != (w.shape[0],):
            raise ValueError(
                f"layer {k}: weight {tuple(w.shape)} / bias {tuple(b.shape)} do not chain from width {sizes[k]}"
            )
    dtype_name = "float64" if weights[0].dtype == np.float64 else "float32"
    w = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in weights])
    b = np.concatenate([np.asarray(x, dtype=np.float64) for x in biases])
    return TorchWeights(sizes, acts, w, b, dtype_name)
