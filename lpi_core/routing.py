"""How often a MoE's router picks each expert on a set of prompts.

`routing_frequency[layer, expert]` is the fraction of the prompts' tokens (padding excluded) that
the layer's router sends to the expert; each layer's row sums to its top-k.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .loading import LanguageModel
from .reproducible import single_thread_ops
from .tokenization import encode_prompts, pad_right


@torch.no_grad()
def routing_frequency(lm: LanguageModel, prompts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
    """[layers, experts]: the fraction of the prompts' tokens routed to each expert, per layer."""
    adapter = lm.adapter
    if not adapter.is_moe:
        raise ValueError(f"{lm.name} is a dense model ({adapter.family}): it has no router")
    encoded = encode_prompts(lm.tokenizer, prompts, lm.max_positions)
    counts = torch.zeros(adapter.num_layers, adapter.num_experts, dtype=torch.float64)
    real = torch.empty(0, dtype=torch.bool)

    def count(layer: int):
        def hook(module, inputs, output) -> None:
            chosen = output[2].reshape(real.numel(), -1)[real]  # top_k_index of the real tokens [tokens, k]
            counts[layer] += torch.bincount(chosen.reshape(-1).cpu(), minlength=adapter.num_experts).double()

        return hook

    handles = [adapter.router(layer).register_forward_hook(count(layer)) for layer in range(adapter.num_layers)]
    try:
        with single_thread_ops():
            for start in range(0, len(encoded), batch_size):
                ids, mask, _ = pad_right(encoded[start : start + batch_size], lm.device)
                real = mask.reshape(-1).bool().cpu()
                lm.model(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return (counts / sum(len(e) for e in encoded)).float()
