"""Scores as labelled arrays (lpi_core/labels.py): values at named coordinates equal the tensors,
and the module paths find the units in the model."""

from __future__ import annotations

import pytest
import torch

from lpi_core import attribute
from lpi_core.labels import unit_names
from tests.helpers import facts, tiny_lm


@pytest.mark.parametrize("family", ["olmoe", "olmo"])
def test_to_xarray_holds_every_score_at_its_named_coordinates(family):
    lm = tiny_lm(family)
    prompts, answers = facts(6)
    att = attribute(lm, prompts, targets=answers, reduce="none")
    ds = att.to_xarray(unit_names(lm.model))
    examples, layers, experts, neurons = att.ffn.shape
    assert dict(ds.ffn.sizes) == dict(example=examples, layer=layers, expert=experts, neuron=neurons)
    for example, layer, expert, neuron in [
        (0, 0, 0, 0),
        (5, layers - 1, experts - 1, neurons - 1),
        (3, 1, experts // 2, 7),
    ]:
        assert (
            ds.ffn.sel(example=example, layer=layer, expert=expert, neuron=neuron).item()
            == att.ffn[example, layer, expert, neuron].item()
        )
    heads, dims = att.attn.shape[2:]
    assert (
        ds.attn.sel(example=4, layer=1, head=heads - 1, dim=dims - 1).item()
        == att.attn[4, 1, heads - 1, dims - 1].item()
    )
    assert ds.heads.sel(example=2, layer=0, head=1).item() == att.heads[2, 0, 1].item()
    assert ds.ffn_layer.sel(example=1).values.tolist() == att.ffn_layer[1].tolist()
    assert ds.target_id.values.tolist() == att.target_ids.tolist()
    torch.testing.assert_close(torch.from_numpy(att.mean().to_xarray().ffn.values), att.ffn.mean(0))

    module = str(ds.ffn_module.sel(layer=1, expert=experts - 1).item())
    if family == "olmoe":  # experts fused in one module: the path ends in the expert's index
        fused, index = module.rsplit(".", 1)
        assert (
            module == f"model.layers.1.mlp.experts.{experts - 1}"
            and int(index) < lm.model.get_submodule(fused).num_experts
        )
    else:
        assert module == "model.layers.1.mlp" and lm.model.get_submodule(module).down_proj.in_features == neurons
    projection = lm.model.get_submodule(str(ds.attn_module.sel(layer=1).item()))
    assert projection is lm.adapter.o_proj(1) and projection.in_features == heads * dims
