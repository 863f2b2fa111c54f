"""The paper's metrics over a checkpoint series, each a few lines on plain tensors.

Scores are dataset-level importances I_t (mean Gated-LPI over examples), one vector of units per
checkpoint (FFN neurons across all layers and experts, or attention neurons across all layers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

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


FLAT = 1e-10  # a profile whose spread is below this fraction of its size is constant up to rounding: no correlation


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson's r; NaN where either vector is constant (up to rounding, `FLAT`)."""
    x, y = x.double().reshape(-1), y.double().reshape(-1)
    xc, yc = x - x.mean(), y - y.mean()
    if xc.norm() <= FLAT * x.norm() or yc.norm() <= FLAT * y.norm():
        return float("nan")
    return (xc @ yc).item() / (xc.norm() * yc.norm()).item()


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


TAIL_REPLICATES = 5  # fewer replicates than this beyond a percentile: the tail is extrapolated (normal)


def bootstrap_interval(replicates: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (NaN replicates ignored). Above 95%, at a level
    whose tails hold fewer than TAIL_REPLICATES replicates each (a p-value below what R replicates
    resolve), the interval at the last resolvable level is widened about the median by the ratio of
    the normal quantiles: a normal tail beyond the resamples, not the extreme replicate."""
    values = np.asarray(replicates, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    base = max(1 - 2 * TAIL_REPLICATES / values.size, 0.95)  # a 95% interval is always the plain one
    if level <= base:
        tail = 100 * (1 - level) / 2
        return (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))
    low, high = bootstrap_interval(values, base)
    middle = float(np.median(values))
    normal = NormalDist()
    stretch = normal.inv_cdf((1 + level) / 2) / normal.inv_cdf((1 + base) / 2)
    return (middle - (middle - low) * stretch, middle + (high - middle) * stretch)


def centred_percentile_interval(
    estimate: float, replicates: Sequence[float], level: float = 0.95, split_half: Sequence[float] | None = None
) -> tuple[float, float]:
    """The percentile interval of the replicates moved by (θ̂ - their median): their spread, centred on θ̂;
    widened by sd(split_half) / sd(replicates) where the split-half deviations spread wider.

    For top-1% set statistics the bootstrap replicates sit below θ̂ (resampling adds rank noise at
    the set's boundary on top of the sample's own) and spread too little (a top-k overlap is not a
    smooth function of the means). `split_half` holds (θ(A) - θ(B)) / √2 over random splits of the
    examples into disjoint halves A, B: independent samples, so its spread is the statistic's
    sampling spread at half the examples, with no plug-in step (tests/test_intervals.py measures
    all three)."""
    values = np.asarray(replicates, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0 or not math.isfinite(estimate):
        return (float("nan"), float("nan"))
    deviations = values - float(np.median(values))
    if split_half is not None:
        halves = np.asarray(split_half, dtype=float)
        halves = halves[~np.isnan(halves)]
        spread = float(deviations.std())
        if halves.size > 1 and spread > 0:
            deviations = deviations * max(1.0, float(halves.std()) / spread)
    low, high = bootstrap_interval(deviations, level)
    return (estimate + low, estimate + high)


def resample_weights(examples: int, replicates: int, seed: int = 0) -> torch.Tensor:
    """[replicates, examples] multiplicities of bootstrap resamples (each row sums to `examples`)."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(examples, (replicates, examples), generator=generator)
    return torch.zeros(replicates, examples).scatter_add_(1, draws, torch.ones(replicates, examples))


def split_half_weights(examples: int, splits: int, seed: int = 0) -> torch.Tensor:
    """[splits, examples] 0/1 rows: each marks a random half A (examples // 2 of them); B is the rest."""
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.stack([torch.randperm(examples, generator=generator)[: examples // 2] for _ in range(splits)])
    return torch.zeros(splits, examples).scatter_(1, chosen, 1.0)


def complement_means(means: np.ndarray, half_means: np.ndarray, examples: int) -> np.ndarray:
    """The means over the other half B of each split, from the means over all examples [...] and over A [S, ...]."""
    half = examples // 2
    return (examples * means[None] - half * half_means) / (examples - half)


FIXED_POINT_BITS = 40  # per-example scores become integers below 2^40 before they are summed


def resampled_means(per_example: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The mean of `per_example` [n, ...] under each resample of `counts` [R, n] (a weighted mean:
    divided by the row's total count) -> [R, ...].

    The scores are rounded to a fixed-point grid (2^-40 of the largest |score|), so every product
    and partial sum of the float64 matrix product is an integer below 2^53: exact, hence the same
    bits whatever the order of the additions, the BLAS library or its number of threads.
    """
    n = per_example.shape[0]
    flat = per_example.reshape(n, -1).double().numpy()
    largest = float(np.abs(flat).max()) if flat.size else 0.0
    if counts.sum(1).max().item() * 2.0**FIXED_POINT_BITS >= 2.0**53:
        raise ValueError(
            f"resamples of more than {2 ** (53 - FIXED_POINT_BITS)} examples cannot be summed exactly; "
            "use fewer examples"
        )
    scale = 2.0 ** (FIXED_POINT_BITS - math.ceil(math.log2(largest))) if largest > 0 else 1.0
    fixed = np.rint(flat * scale)  # integers, |x| <= 2^40
    total = counts.double().numpy() @ fixed  # integers below n · 2^40 < 2^53: exact
    means = torch.from_numpy(total / (counts.double().numpy().sum(1, keepdims=True) * scale))
    return means.to(per_example.dtype).reshape(counts.shape[0], *per_example.shape[1:])


# -- the same metrics over rows of bootstrap replicates, in numpy (one fixed order of additions) --


def top_fraction_mask(scores: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    """[R, U] -> bool [R, U]: each row's top-`fraction` units by |score| (a deterministic selection)."""
    flat = np.abs(scores.reshape(scores.shape[0], -1))
    k = max(1, round(fraction * flat.shape[1]))
    order = np.argpartition(-flat, k - 1, axis=1)[:, :k]
    mask = np.zeros(flat.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def jaccard_rows(mask_a: np.ndarray, mask_b: np.ndarray) -> np.ndarray:
    """Row by row: |A ∩ B| / |A ∪ B| of two boolean [R, U] set masks."""
    inter = (mask_a & mask_b).sum(1)
    union = (mask_a | mask_b).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def positive_gain_concentration_rows(prev: np.ndarray, cur: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    """R_t of each row of [R, layers, units]: per layer the share of Δ⁺ in its top-`fraction` units,
    averaged over the layers with any gain (NaN where none has)."""
    gain = np.clip(cur.astype(np.float64) - prev.astype(np.float64), 0, None)  # [R, L, U]
    k = max(1, round(fraction * gain.shape[2]))
    top = np.sort(-np.partition(-gain, k - 1, axis=2)[:, :, :k], axis=2).sum(2)  # sorted: one order of additions
    total = gain.sum(2)
    shares = np.where(total > 0, top / np.where(total > 0, total, 1), np.nan)
    with np.errstate(invalid="ignore"):
        counted = (total > 0).sum(1)
        return np.where(counted > 0, np.nansum(shares, 1) / np.maximum(counted, 1), np.nan)


def pooled_gain_concentration_rows(
    prev: np.ndarray, cur: np.ndarray, counted: np.ndarray | None = None, fraction: float = 0.01
) -> np.ndarray:
    """R_t of each row of [R, layers, units] with the layers pooled into one: the share of Δ⁺ in the
    top-`fraction` of all units, or of the units marked in `counted` (bool [layers, units]: a MoE's
    routed units) with k = `fraction` of their count."""
    rows = prev.shape[0]
    if counted is None:
        return positive_gain_concentration_rows(prev.reshape(rows, 1, -1), cur.reshape(rows, 1, -1), fraction)
    keep = counted.reshape(-1)
    return positive_gain_concentration_rows(
        prev.reshape(rows, -1)[:, keep][:, None], cur.reshape(rows, -1)[:, keep][:, None], fraction
    )


def held_out_gain_concentration_rows(
    prev_a: np.ndarray,
    cur_a: np.ndarray,
    prev_b: np.ndarray,
    cur_b: np.ndarray,
    counted: np.ndarray | None = None,
    pooled: bool = False,
    fraction: float = 0.01,
) -> np.ndarray:
    """Cross-fitted R_t of each row of [S, layers, units] split halves A and B: per layer, the
    top-`fraction` units of half A's positive gains Δ_A⁺ = max(0, cur_a - prev_a), their *signed*
    gain on half B over B's positive gains Σ Δ_B⁺, and the same with A and B swapped, averaged; over
    the layers whose B (or A) has any gain. The set is chosen on examples it is not scored on and
    scored by its signed change there, so a change that is noise alone (of any scale, unit by unit)
    gives 0 on average; `pooled`: the layers as one; `counted` (bool [layers, units]): only those
    units (a MoE's routed ones), the layers pooled."""
    rows = prev_a.shape[0]

    def shaped(x: np.ndarray) -> np.ndarray:
        if counted is not None:
            return x.reshape(rows, -1)[:, counted.reshape(-1)][:, None]
        return x.reshape(rows, 1, -1) if pooled else x

    change_a = shaped(cur_a).astype(np.float64) - shaped(prev_a)
    change_b = shaped(cur_b).astype(np.float64) - shaped(prev_b)
    k = max(1, round(fraction * change_a.shape[2]))

    def share(select: np.ndarray, score: np.ndarray) -> np.ndarray:
        chosen = np.argpartition(-np.clip(select, 0, None), k - 1, axis=2)[:, :, :k]
        top = np.sort(np.take_along_axis(score, chosen, axis=2), axis=2).sum(2)  # sorted: one order of additions
        total = np.clip(score, 0, None).sum(2)
        shares = np.where(total > 0, top / np.where(total > 0, total, 1), np.nan)
        counted_layers = (total > 0).sum(1)
        with np.errstate(invalid="ignore"):
            return np.where(counted_layers > 0, np.nansum(shares, 1) / np.maximum(counted_layers, 1), np.nan)

    return (share(change_a, change_b) + share(change_b, change_a)) / 2


def stability_beyond_noise(
    prev_a: np.ndarray, prev_b: np.ndarray, cur_a: np.ndarray, cur_b: np.ndarray
) -> tuple[float, np.ndarray]:
    """For top-set masks [S, U] of two halves A, B of the examples at checkpoints t-1 and t: the
    overlap (|X ∩ Y| / k) of sets from opposite halves across the pair (mean of (A_{t-1}, B_t) and
    (B_{t-1}, A_t)) and of the two halves at one checkpoint (mean over t-1 and t), each less the
    overlap of random sets (k / U); their ratio of means over the splits, in [0, 1], and each split's
    ratio (clipped to [0, 1]). Both overlaps compare independent halves, so where noise swaps members
    for random outsiders it divides out (ρ^g over g steps at a constant turnover ρ, whatever the
    noise); noise that swaps units near the set's boundary does not divide out entirely
    (docs/method.md)."""
    k = np.maximum(prev_a.sum(1), 1)
    chance = float(np.mean(k)) / prev_a.shape[1]
    overlap = lambda x, y: (x & y).sum(1) / k - chance  # noqa: E731
    across = (overlap(prev_a, cur_b) + overlap(prev_b, cur_a)) / 2
    within = (overlap(cur_a, cur_b) + overlap(prev_a, prev_b)) / 2
    point = float(np.clip(across.mean() / within.mean(), 0, 1)) if within.mean() > 0 else float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        per_split = np.clip(np.where(within > 0, across / np.where(within > 0, within, 1), np.nan), 0, 1)
    return point, per_split


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Row by row Pearson correlation of [R, L] profiles (NaN where a row is constant up to rounding, `FLAT`)."""
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    x_spread, y_spread = np.sqrt((xc * xc).sum(1)), np.sqrt((yc * yc).sum(1))
    flat = (x_spread <= FLAT * np.sqrt((x * x).sum(1))) | (y_spread <= FLAT * np.sqrt((y * y).sum(1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(flat, np.nan, (xc * yc).sum(1) / (x_spread * y_spread))


def rho_avg_rows(profiles: np.ndarray, pairs: str = "consecutive") -> np.ndarray:
    """ρ_avg of [R, checkpoints, layers]: the mean Pearson correlation over consecutive (default) or all pairs."""
    count = profiles.shape[1]
    chosen = (
        [(i, i + 1) for i in range(count - 1)]
        if pairs == "consecutive"
        else [(i, j) for i in range(count) for j in range(i + 1, count)]
    )
    return np.mean([pearson_rows(profiles[:, i], profiles[:, j]) for i, j in chosen], axis=0)


def sigma_rel_rows(profiles: np.ndarray) -> np.ndarray:
    """σ_rel of [R, checkpoints, layers]: per layer std / |mean| over checkpoints, averaged over layers."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (profiles.std(1) / np.abs(profiles.mean(1))).mean(1)
