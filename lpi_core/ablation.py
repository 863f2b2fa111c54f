"""HIT@k with attention heads and/or FFN neurons masked at every position.

A head is masked by zeroing its slice of the `o_proj` input (a forward pre-hook). An FFN neuron
`(layer, expert, neuron)` is masked by zeroing its coefficient wherever its expert runs, done
exactly by zeroing its column of the down projection for the duration (the fused expert kernels
offer no hook inside); `expert="shared"` names a Qwen2-MoE shared-expert neuron.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch

from .capture import last_position_logits
from .engine import target_rank
from .loading import LanguageModel
from .tokenization import checked_target_ids, encode_prompts

Head = tuple[int, int]
Neuron = tuple[int, "int | str", int]


def _down_projection(lm: LanguageModel, layer: int, expert: int | str) -> torch.Tensor:
    """The [hidden, ffn_dim] down-projection weight that holds the columns of `expert`."""
    adapter = lm.adapter
    if expert == "shared":
        shared = adapter.shared_expert(layer)
        if shared is None:
            raise ValueError(f"layer {layer} of {adapter.family} has no shared expert")
        return shared[0].down[0]
    if not 0 <= int(expert) < adapter.num_experts:
        raise ValueError(f"expert {expert} out of range: layer {layer} has {adapter.num_experts} experts")
    return adapter.ffn_weights(layer).down[int(expert)]


@contextmanager
def masked(lm: LanguageModel, heads: Iterable[Head] = (), ffn: Iterable[Neuron] = ()) -> Iterator[None]:
    """Within the block, the given heads and FFN neurons contribute nothing."""
    adapter = lm.adapter
    by_layer: dict[int, list[int]] = defaultdict(list)
    for layer, head in heads:
        if not (0 <= layer < adapter.num_layers and 0 <= head < adapter.num_heads):
            raise ValueError(
                f"head ({layer}, {head}) out of range: {adapter.num_layers} layers × {adapter.num_heads} heads"
            )
        by_layer[layer].append(head)
    handles = []
    for layer, layer_heads in by_layer.items():
        keep = torch.ones(adapter.num_heads, adapter.head_dim, device=lm.device, dtype=lm.dtype)
        keep[layer_heads] = 0
        keep = keep.reshape(-1)
        handles.append(adapter.o_proj(layer).register_forward_pre_hook(lambda m, a, keep=keep: (a[0] * keep,)))
    saved: list[tuple[torch.Tensor, int, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for layer, expert, neuron in ffn:
                down = _down_projection(lm, layer, expert)
                saved.append((down, neuron, down[:, neuron].clone()))
                down[:, neuron] = 0
        yield
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for down, neuron, column in reversed(saved):
                down[:, neuron] = column


def target_ranks(
    lm: LanguageModel,
    prompts: Sequence[str],
    target_ids: Sequence[int] | torch.Tensor,
    mask_heads: Iterable[Head] = (),
    mask_ffn: Iterable[Neuron] = (),
    batch_size: int = 16,
) -> torch.Tensor:
    """Per example: the target's rank among the model's next-token logits (0 = top-1; with the masks applied)."""
    target_ids = checked_target_ids(target_ids, len(prompts), lm.adapter.unembedding.shape[0])
    with masked(lm, heads=mask_heads, ffn=mask_ffn):
        logits = last_position_logits(lm, encode_prompts(lm.tokenizer, prompts, lm.max_positions), batch_size)
    return target_rank(logits, target_ids)


def hits_at_k(
    lm: LanguageModel,
    prompts: Sequence[str],
    target_ids: Sequence[int] | torch.Tensor,
    k: int = 10,
    mask_heads: Iterable[Head] = (),
    mask_ffn: Iterable[Neuron] = (),
    batch_size: int = 16,
) -> torch.Tensor:
    """Per example: is the target among the model's top-k next tokens (with the masks applied)?"""
    return target_ranks(lm, prompts, target_ids, mask_heads, mask_ffn, batch_size) < k


def hit_at_k(
    lm: LanguageModel,
    prompts: Sequence[str],
    target_ids: Sequence[int] | torch.Tensor,
    k: int = 10,
    mask_heads: Iterable[Head] = (),
    mask_ffn: Iterable[Neuron] = (),
    batch_size: int = 16,
) -> float:
    """HIT@k: the share of examples whose target is in the model's top-k next tokens."""
    return hits_at_k(lm, prompts, target_ids, k, mask_heads, mask_ffn, batch_size).float().mean().item()
