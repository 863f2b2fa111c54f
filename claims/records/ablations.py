"""The units a record masks, and the target's rank under each mask.

Three sets per ablation (top-1 head, top-10 heads, top-1% FFN neurons by the S_t ranking):
- **in-sample** (`<ablation>`): chosen on every example, scored on the same examples (the paper's);
- **held-out** (`held-out/<ablation>`): chosen on one half of the examples (the first split of
  `split_half_weights`), scored on the other, both ways, so that no example is scored with a set
  its own scores chose;
- **random** (`random/<ablation>`): as many random heads, or as many random FFN units in each layer
  as the chosen set has there (same layers' mix), drawn from a generator seeded by the step: the
  drop any set of that size and placement causes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lpi_core import LanguageModel
from lpi_core.ablation import target_ranks
from lpi_core.metrics import resampled_means

ABLATIONS = ("top1-head", "top10-heads", "top1pct-ffn")
SETS = ("in-sample", "held-out", "random")
HIT_KEYS = (
    "base",
    *ABLATIONS,
    *(f"{kind}/{a}" for kind in SETS[1:] for a in ABLATIONS),
)  # a record's `hits` and `hits_at_1`
HEAD_COUNTS = {"top1-head": 1, "top10-heads": 10}
FFN_SHARE = 0.01  # the top-1% FFN set


def ranked(scores: torch.Tensor, rank_by: str) -> torch.Tensor:
    """Flat unit indices, most important first: by |I| ("abs", the S_t order) or by signed I ("positive")."""
    return (scores.abs() if rank_by == "abs" else scores).reshape(-1).argsort(descending=True, stable=True)


def chosen_masks(heads: torch.Tensor, ffn: torch.Tensor, rank_by: str) -> dict[str, dict]:
    """The three ablations' masks from unit scores: heads [layers, heads], ffn [layers, experts, ffn_dim]."""
    per_layer = heads.shape[1]
    experts, ffn_dim = ffn.shape[1:]
    head_order, ffn_order = ranked(heads, rank_by), ranked(ffn, rank_by)
    top_ffn = ffn_order[: max(1, round(FFN_SHARE * ffn_order.numel()))]
    masks = {
        name: dict(mask_heads=[divmod(int(i), per_layer) for i in head_order[:count]])
        for name, count in HEAD_COUNTS.items()
    }
    masks["top1pct-ffn"] = dict(
        mask_ffn=[(int(i) // (experts * ffn_dim), int(i) // ffn_dim % experts, int(i) % ffn_dim) for i in top_ffn]
    )
    return masks


def random_masks(
    chosen: dict[str, dict], heads_shape: Sequence[int], ffn_shape: Sequence[int], seed: int
) -> dict[str, dict]:
    """Random sets the size of `chosen`'s: heads anywhere; FFN units, per layer, as many as the chosen set has there."""
    generator = torch.Generator().manual_seed(seed)
    layers, per_layer = heads_shape
    _, experts, ffn_dim = ffn_shape
    masks = {}
    for name, count in HEAD_COUNTS.items():
        masks[name] = dict(
            mask_heads=[
                divmod(int(i), per_layer) for i in torch.randperm(layers * per_layer, generator=generator)[:count]
            ]
        )
    per_layer_count = torch.bincount(
        torch.tensor([layer for layer, _, _ in chosen["top1pct-ffn"]["mask_ffn"]]), minlength=layers
    )
    units = []
    for layer, count in enumerate(per_layer_count.tolist()):
        units += [
            (layer, int(i) // ffn_dim, int(i) % ffn_dim)
            for i in torch.randperm(experts * ffn_dim, generator=generator)[:count]
        ]
    masks["top1pct-ffn"] = dict(mask_ffn=units)
    return masks


def means_over(per_example: torch.Tensor, *subsets: torch.Tensor) -> list[torch.Tensor]:
    """The mean of [n, ...] over each boolean subset of the examples, summed exactly (resampled_means)."""
    return list(resampled_means(per_example, torch.stack(subsets).double()))


def ablation_ranks(
    lm: LanguageModel,
    prompts: Sequence[str],
    answer_ids: torch.Tensor,
    scores: tuple[torch.Tensor, torch.Tensor],
    half: torch.Tensor,
    rank_by: str,
    seed: int,
    batch_size: int,
) -> dict[str, torch.Tensor]:
    """The answer's rank per example (0 = top-1) under every ablation's in-sample, held-out and random set.
    `scores`: the per-example ranking scores of heads [n, layers, heads] and FFN units [n, layers, experts, ffn_dim]."""
    (heads_all, heads_a, heads_b), (ffn_all, ffn_a, ffn_b) = (
        means_over(s, torch.ones_like(half), half, ~half) for s in scores
    )
    chosen = chosen_masks(heads_all, ffn_all, rank_by)
    chosen_on = {True: chosen_masks(heads_a, ffn_a, rank_by), False: chosen_masks(heads_b, ffn_b, rank_by)}
    randoms = random_masks(chosen, heads_all.shape, ffn_all.shape, seed)
    rank = lambda idx, mask: target_ranks(lm, [prompts[i] for i in idx], answer_ids[idx], batch_size=batch_size, **mask)  # noqa: E731
    all_examples = torch.arange(len(prompts))
    ranks = {}
    for name in ABLATIONS:
        ranks[name] = rank(all_examples, chosen[name])
        held_out = torch.empty(len(prompts), dtype=ranks[name].dtype)
        for in_a in (True, False):
            scored = (half != in_a).nonzero().flatten()  # half B scored with A's set, then A with B's
            held_out[scored] = rank(scored, chosen_on[in_a][name])
        ranks[f"held-out/{name}"] = held_out
        ranks[f"random/{name}"] = rank(all_examples, randoms[name])
    return ranks
