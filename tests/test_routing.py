"""Routing frequency (lpi_core/routing.py) against the router run by hand on each unpadded prompt."""

from __future__ import annotations

import pytest
import torch

from lpi_core.routing import routing_frequency
from lpi_core.tokenization import encode_prompts
from tests.helpers import facts, tiny_lm


def test_routing_frequency_counts_each_real_tokens_top_k_experts():
    lm = tiny_lm("olmoe")
    prompts = facts(7)[0]
    frequency = routing_frequency(lm, prompts, batch_size=3)  # padded batches of unequal lengths
    adapter = lm.adapter
    by_hand = torch.zeros(adapter.num_layers, adapter.num_experts)
    tokens = 0
    for ids in encode_prompts(lm.tokenizer, prompts):
        chosen = {}
        hooks = [
            adapter.router(l).register_forward_hook(lambda m, i, o, l=l: chosen.__setitem__(l, o[2]))
            for l in range(adapter.num_layers)
        ]
        with torch.no_grad():
            lm.model(input_ids=torch.tensor([ids]))
        for h in hooks:
            h.remove()
        for layer, index in chosen.items():
            for expert in index.reshape(-1).tolist():
                by_hand[layer, expert] += 1
        tokens += len(ids)
    torch.testing.assert_close(frequency, by_hand / tokens)
    torch.testing.assert_close(
        frequency.sum(1), torch.full((adapter.num_layers,), float(lm.model.config.num_experts_per_tok))
    )


def test_a_dense_model_has_no_routing():
    with pytest.raises(ValueError, match="dense model"):
        routing_frequency(tiny_lm("olmo"), facts(2)[0])
