"""The paper's metrics over a checkpoint series, each a few lines on plain tensors.

Scores are dataset-level importances I_t (mean Gated-LPI over examples), one vector of units per
checkpoint (FFN neurons across all layers and experts, or attention neurons across all layers).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def top_fraction(scores: torch.Tensor, fraction: float = 0.01) -> torch.Tensor:
    """Indices of the `fraction` of units with the largest |score| (at least one unit)."""
    flat = scores.reshape(-1).abs()
    k = max(1, round(fraction * flat.numel()))
    return flat.topk(k).indices


def jaccard(a: torch.Tensor, b: torch.Tensor) -> float:
    """|A ∩ B| / |A ∪ B| of two index sets (1.0 for two empty sets)."""
    sa, sb = set(a.tolist()), set(b.tolist())
    union = len(sa | sb)
    return len(sa & sb) / union if union else 1.0


def topk_jaccard(scores_t: torch.Tensor, scores_u: torch.Tensor, fraction: float = 0.01) -> float:
    """J_stab of two checkpoints: the Jaccard of their top-`fraction` sets."""
    return jaccard(top_fraction(scores_t, fraction), top_fraction(scores_u, fraction))


def random_set_jaccard(units: int, fraction: float = 0.01) -> float:
    """The expected Jaccard of two independent random sets of k = fraction·units: k / (2·units - k)."""
    k = max(1, round(fraction * units))
    return k / (2 * units - k)


def positive_gain_concentration(scores_prev: torch.Tensor, scores_t: torch.Tensor, fraction: float = 0.01) -> float:
    """R_t: per layer (first dimension), the share of positive gain Δ = max(0, I_t - I_{t-1}) held by the
    top-`fraction` of Δ; averaged over the layers that have any gain."""
    gain = (scores_t - scores_prev).clamp(min=0).reshape(scores_t.shape[0], -1)
    shares = []
    for layer_gain in gain:
        total = layer_gain.sum()
        if total > 0:
            k = max(1, round(fraction * layer_gain.numel()))
            shares.append((layer_gain.topk(k).values.sum() / total).item())
    return float(np.mean(shares)) if shares else float("nan")


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    denominator = (x.norm() * y.norm()).item()
    return (x @ y).item() / denominator if denominator > 0 else float("nan")


def ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks of the values of `x` (flattened); tied values share their average rank."""
    _, inverse, counts = np.unique(x.reshape(-1).cpu().numpy(), return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # the rank of each distinct value's last occurrence
    return torch.from_numpy((last - (counts - 1) / 2)[inverse.reshape(-1)])


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation: the Pearson correlation of the ranks."""
    return pearson(ranks(x), ranks(y))


def rho_avg(profiles: Sequence[torch.Tensor]) -> float:
    """ρ_avg: the mean Pearson correlation of consecutive layer profiles P_t, P_t+1."""
    return float(np.mean([pearson(a, b) for a, b in zip(profiles[:-1], profiles[1:])]))


def sigma_rel(profiles: Sequence[torch.Tensor]) -> float:
    """σ_rel: per layer, std over checkpoints / |mean over checkpoints|; averaged over layers."""
    stacked = torch.stack(list(profiles)).double()  # [checkpoints, layers]
    return (stacked.std(0, unbiased=False) / stacked.mean(0).abs()).mean().item()


def ablation_drop(hit_before: float, hit_after: float) -> float:
    """100 · (HIT@10 before - after) / before."""
    return 100.0 * (hit_before - hit_after) / hit_before if hit_before > 0 else float("nan")


def knowledge_onset(steps: Sequence[int], hit: Sequence[float], chance: float) -> int | None:
    """The first step whose HIT@10 has made half of its final gain over `chance`; None without a gain."""
    final = hit[-1]
    if not final > chance:
        return None
    return next(s for s, h in zip(steps, hit) if h - chance >= 0.5 * (final - chance))


def bootstrap_interval(replicates: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (NaN replicates ignored)."""
    values = np.asarray(replicates, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    tail = 100 * (1 - level) / 2
    return (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))


def resample_weights(examples: int, replicates: int, seed: int = 0) -> torch.Tensor:
    """[replicates, examples] multiplicities of bootstrap resamples (each row sums to `examples`)."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(examples, (replicates, examples), generator=generator)
    return torch.zeros(replicates, examples).scatter_add_(1, draws, torch.ones(replicates, examples))


def resampled_means(per_example: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The mean of `per_example` [n, ...] under each resample of `counts` [R, n] -> [R, ...].

    Summed example by example in float64: the order of the additions is fixed, so the result is
    the same bit for bit whatever the number of threads (a matrix product's is not).
    """
    n = per_example.shape[0]
    flat = per_example.reshape(n, -1).double()
    total = torch.zeros(counts.shape[0], flat.shape[1], dtype=torch.float64)
    for i in range(n):
        total += counts[:, i, None].double() * flat[i]
    return (total / n).to(per_example.dtype).reshape(counts.shape[0], *per_example.shape[1:])
