"""Metric properties over random inputs (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lpi_core.metrics import (
    bootstrap_interval,
    jaccard,
    positive_gain_concentration,
    rho_avg,
    sigma_rel,
    topk_jaccard,
)

finite = st.floats(-10, 10, allow_nan=False, width=32)
index_sets = st.lists(st.integers(0, 50), max_size=20).map(lambda xs: torch.tensor(sorted(set(xs)), dtype=torch.long))


@given(index_sets, index_sets)
def test_jaccard_is_bounded_and_symmetric(a, b):
    j = jaccard(a, b)
    assert 0.0 <= j <= 1.0 and j == jaccard(b, a)
    assert jaccard(a, a) == 1.0


@settings(max_examples=60)
@given(
    arrays(np.float32, (3, 40), elements=finite),
    arrays(np.float32, (3, 40), elements=finite),
    st.integers(0, 2**31 - 1),
)
def test_unit_order_does_not_matter(x, y, seed):
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(seed))
    r = positive_gain_concentration(x, y, 0.05)
    assert math.isnan(r) or 0.0 <= r <= 1.0 + 1e-6
    r_perm = positive_gain_concentration(x[:, perm], y[:, perm], 0.05)
    assert (math.isnan(r) and math.isnan(r_perm)) or abs(r - r_perm) < 1e-6
    # distinct magnitudes make the top set unique, so its Jaccard cannot depend on the order
    xd, yd = x.flatten() + torch.arange(120) * 1e-3, y.flatten() + torch.arange(120) * 1e-3
    p = torch.randperm(120, generator=torch.Generator().manual_seed(seed))
    assert topk_jaccard(xd, yd, 0.05) == topk_jaccard(xd[p], yd[p], 0.05)


@settings(max_examples=60)
@given(arrays(np.float64, (4, 6), elements=st.floats(0.1, 10)), st.integers(0, 2**31 - 1))
def test_rho_avg_bounded_and_layer_order_invariant(profiles, seed):
    rows = [torch.from_numpy(p) for p in profiles]
    rho = rho_avg(rows)
    assert math.isnan(rho) or -1.0 - 1e-9 <= rho <= 1.0 + 1e-9
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(seed))
    permuted = rho_avg([r[perm] for r in rows])
    assert (math.isnan(rho) and math.isnan(permuted)) or abs(rho - permuted) < 1e-9
    assert abs(sigma_rel(rows) - sigma_rel([r[perm] for r in rows])) < 1e-9


@given(st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=200))
def test_bootstrap_interval_contains_the_replicates_median(values):
    low, high = bootstrap_interval(values)
    assert low <= float(np.median(values)) <= high
