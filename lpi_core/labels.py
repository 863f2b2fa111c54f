"""Scores as labelled arrays (xarray), named by the model's own module paths.

An FFN neuron is `(layer, expert, neuron)`, labelled with the module that holds it:
`model.layers.3.mlp.experts.5` (expert 5 of layer 3's MoE block) or `model.layers.3.mlp` (a dense
FFN, one "expert"); neuron n is that block's n-th intermediate unit. An attention neuron is
`(layer, head, dim)`, the input dimension `head * head_dim + dim` of `model.layers.3.self_attn.o_proj`.
The block's path finds the unit in the model: `model.get_submodule` of the path itself, or, where
the experts are fused in one module (OLMoE, Mixtral in transformers 5), of the path without its
last part, the expert being that module's index along its experts dimension. A Qwen2-MoE shared
expert (`Attribution.shared_ffn`) is not labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr
from torch import nn

from .adapters import adapter_for

SCORES = ("ffn", "attn", "heads", "ffn_layer", "attn_layer")  # Attribution's per-unit score fields
UNIT_DIMS = {
    "ffn": ("layer", "expert", "neuron"),
    "attn": ("layer", "head", "dim"),
    "heads": ("layer", "head"),
    "ffn_layer": ("layer",),
    "attn_layer": ("layer",),
}


@dataclass(frozen=True)
class UnitNames:
    """Module paths: `ffn[layer][expert]` holds the FFN neurons, `attn[layer]` the attention output projection."""

    ffn: tuple[tuple[str, ...], ...]
    attn: tuple[str, ...]


def unit_names(model: nn.Module) -> UnitNames:
    """The module paths of a supported model's units (works on a model on the meta device)."""
    adapter = adapter_for(model)
    path = {id(module): name for name, module in model.named_modules()}
    ffn = []
    for layer in range(adapter.num_layers):
        block = path[id(adapter.mlp(layer))]
        ffn.append(tuple(f"{block}.experts.{e}" for e in range(adapter.num_experts)) if adapter.is_moe else (block,))
    attn = tuple(path[id(adapter.o_proj(layer))] for layer in range(adapter.num_layers))
    return UnitNames(ffn=tuple(ffn), attn=attn)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to(torch.float32).cpu().numpy()


def scores_dataset(
    scores: dict[str, torch.Tensor], names: UnitNames | None = None, leading: tuple[str, ...] = ()
) -> xr.Dataset:
    """`scores` (any of SCORES, each with `leading` dimensions first, e.g. ("example",) or
    ("seed", "step")) as a Dataset with integer coordinates per unit dimension and, with `names`,
    the module path of every FFN block (`ffn_module[layer, expert]`) and attention projection
    (`attn_module[layer]`)."""
    data = {}
    for name, tensor in scores.items():
        data[name] = xr.DataArray(_numpy(tensor), dims=leading + UNIT_DIMS[name])
    dataset = xr.Dataset(data)
    dataset = dataset.assign_coords({dim: np.arange(size) for dim, size in dataset.sizes.items() if dim not in leading})
    if names is not None:
        dataset = dataset.assign_coords(
            ffn_module=(("layer", "expert"), np.array(names.ffn, dtype=object)),
            attn_module=(("layer",), np.array(names.attn, dtype=object)),
        )
    return dataset
