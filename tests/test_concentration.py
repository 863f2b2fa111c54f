"""R_t as the claims compute it (`*_rows` in lpi_core/metrics.py, measure.py's readings), its split-half
null and the routed control on planted MoE records, and gap-normalised J on a planted turnover."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from claims.catalogue.checks import concentration_reading
from claims.catalogue.evaluate import evaluate
from claims.catalogue.paper import claim_by_id
from claims.records.ablations import HIT_KEYS
from claims.statistics.measure import measure_series
from claims.statistics.verdicts import REPLICATED
from claims.statistics.windows import shared_scales
from lpi_core.metrics import (
    gap_normalised_jaccard,
    jaccard_rows,
    pooled_gain_concentration_rows,
    positive_gain_concentration,
    positive_gain_concentration_rows,
    resample_weights,
    split_half_weights,
    top_fraction_mask,
)


def test_r_t_rows_equal_the_scalar_definition_row_by_row():
    rng = np.random.default_rng(0)
    prev, cur = rng.normal(size=(5, 3, 200)), rng.normal(size=(5, 3, 200))
    rows = positive_gain_concentration_rows(prev, cur)
    by_row = [positive_gain_concentration(torch.from_numpy(p), torch.from_numpy(c)) for p, c in zip(prev, cur)]
    assert rows == pytest.approx(by_row, rel=1e-12)


def test_r_t_rows_by_hand_per_layer_pooled_and_routed():
    # two layers of 100 units (top 1% = 1 unit a layer); gains: layer 0 one unit +9, nine units +1 (share 9/18);
    # layer 1 one unit +3, three units +1 (3/6)
    prev = np.zeros((1, 2, 100))
    cur = prev.copy()
    cur[0, 0, 0], cur[0, 0, 1:10] = 9.0, 1.0
    cur[0, 1, 0], cur[0, 1, 1:4] = 3.0, 1.0
    cur[0, 1, 50] = -4.0  # a loss: no positive gain
    assert positive_gain_concentration_rows(prev, cur)[0] == pytest.approx((9 / 18 + 3 / 6) / 2)
    # pooled: 200 units, top 1% = 2 units (9 and 3) of all gains 24
    assert pooled_gain_concentration_rows(prev, cur)[0] == pytest.approx(12 / 24)
    # routed: the first 10 units of each layer (20 units, top 1% = 1: the 9) of their gains 9+9+3+3 = 24
    routed = np.zeros((2, 100), dtype=bool)
    routed[:, :10] = True
    assert pooled_gain_concentration_rows(prev, cur, routed)[0] == pytest.approx(9 / 24)


def test_gap_normalised_jaccard_by_hand_and_on_a_planted_turnover():
    # J = 1/3 is an overlap of 2·(1/3)/(4/3) = 1/2; over twice the reference gap it carries to √(1/2) = 0.7071,
    # J = 0.7071 / 1.2929 = 0.5469
    assert gap_normalised_jaccard(np.array(1 / 3), 200, 100) == pytest.approx(0.70710678 / 1.29289322)
    assert gap_normalised_jaccard(np.array(0.4), 100, 100) == pytest.approx(0.4)
    # a top set of 50 among 5,000 units loses each member with probability 1% a step (to a random outsider):
    # its J depends on the gap only; across gaps of 30 to 200 steps the gap-normalised J stays at one value
    rng = np.random.default_rng(3)
    steps = [0, 30, 60, 90, 140, 190, 290, 390, 590, 790]
    members = set(range(50))
    sets = {}
    for step in range(steps[-1] + 1):
        if step in steps:
            sets[step] = set(members)
        leaving = [u for u in members if rng.random() < 0.01]
        outside = [u for u in rng.permutation(5000) if u not in members][: len(leaving)]
        members = (members - set(leaving)) | set(int(u) for u in outside)
    masks = {s: np.isin(np.arange(5000), sorted(sets[s]))[None] for s in steps}
    raw = np.array([jaccard_rows(masks[a], masks[b])[0] for a, b in zip(steps[:-1], steps[1:])])
    carried = gap_normalised_jaccard(raw, np.diff(steps), 100)
    assert raw.max() - raw.min() > 0.4  # gaps of 30 and 200: J 0.59 against 0.08 or so
    assert carried.std() < 0.05 and abs(carried.mean() - (0.99**100) / (2 - 0.99**100)) < 0.05


EXAMPLES, RESAMPLES, LAYERS, UNITS, STEPS = 60, 100, 4, 1000, [10, 20, 30, 40, 50, 60]


def _records(rng, core_gain: float) -> dict[int, dict]:
    """A planted MoE: in each layer 60% of the units are never routed (every example scores exactly 0); the
    routed ones keep one population mean at every checkpoint, measured with fresh per-example noise each time,
    except a core of 10 routed units a layer that gains `core_gain` a checkpoint."""
    routed = rng.random((LAYERS, UNITS)) < 0.4
    core = np.zeros((LAYERS, UNITS), dtype=bool)
    for layer in range(LAYERS):
        core[layer, np.flatnonzero(routed[layer])[:10]] = True
    population = rng.normal(size=(LAYERS, UNITS)) * routed
    counts = resample_weights(EXAMPLES, RESAMPLES).double()
    splits = split_half_weights(EXAMPLES, RESAMPLES).double()
    records = {}
    for i, step in enumerate(STEPS):
        mean = population + core_gain * i * core
        per_example = torch.from_numpy((mean + 0.5 * rng.normal(size=(EXAMPLES, LAYERS, UNITS))) * routed)
        flat = per_example.reshape(EXAMPLES, -1)
        means = lambda w: ((w @ flat) / w.sum(1, keepdim=True)).reshape(-1, LAYERS, UNITS)  # noqa: E731
        hits = torch.ones(EXAMPLES, dtype=torch.bool)
        layer = torch.ones(EXAMPLES, LAYERS).double()
        records[step] = {
            "ffn": per_example.mean(0),
            "attn": per_example.mean(0),
            "heads": torch.zeros(LAYERS, 2),
            "ffn_layer": layer.mean(0),
            "attn_layer": layer.mean(0),
            "boot_ffn": means(counts).float(),
            "boot_attn": means(counts).float(),
            "boot_ffn_layer": torch.ones(RESAMPLES, LAYERS).double(),
            "boot_attn_layer": torch.ones(RESAMPLES, LAYERS).double(),
            "split_ffn": means(splits),
            "split_attn": means(splits),
            "hits": {k: hits.clone() for k in HIT_KEYS},
            "hits_at_1": {k: hits.clone() for k in HIT_KEYS},
            "meta": {"vocab": 1000},
        }
    return records


def _concentration(core_gain: float):
    rng = np.random.default_rng(9)
    m = measure_series("moe", "planted", 0, STEPS[-1], _records(rng, core_gain), onset=STEPS[0])
    scales = shared_scales({"moe": {0: STEPS[0]}}, {"moe": {0: STEPS}}, {"moe": STEPS[-1]})
    return m, evaluate(claim_by_id("ffn-concentration"), "moe", {"moe": [m]}, scales)


def test_a_moe_whose_scores_do_not_change_has_r_t_at_its_null():
    """Unrouted units score exactly 0 and nothing is learned between checkpoints: the raw R_t is far above
    the 1% a flat gain would give, yet it is what two halves of one checkpoint give as well."""
    m, result = _concentration(core_gain=0.0)
    assert concentration_reading(m, "ffn") == "layer"  # 1% of 1,000 units a layer: 10
    raw = float(np.nanmean(m.concentration["ffn/layer"].points))
    null = float(np.nanmean(m.concentration_null["ffn/layer"].points))
    assert raw > 0.05 and null > 0.05  # tails of noise: far above a flat 1%
    check = result.checks[0]
    assert check.verdict != REPLICATED and abs(check.value) < 0.3 * raw
    assert m.routed_ffn[0] == pytest.approx(0.4 * LAYERS * UNITS, rel=0.05)  # 40% of the units are routed
    # the routed reading counts its top 1% among the routed units only
    points = m.concentration["ffn/routed"].points
    assert np.isfinite(points).all() and 0 < points.mean() < 1


def test_a_core_that_keeps_gaining_exceeds_its_null_and_the_routed_control():
    m, result = _concentration(core_gain=1.0)
    excess, routed = result.checks[0], m.concentration["ffn/routed"]
    assert excess.verdict == REPLICATED and excess.value > 0.2
    null = m.concentration_null["ffn/routed"].points
    # the routed top 1% (16 of ~1,600 units) holds 16 of the core's 40 gaining units: ~16 / (40 + the noise's
    # positive part, ~57) = 0.17 against a null of ~0.07
    assert np.nanmean(routed.points) > np.nanmean(null) + 0.1


def test_a_top_set_mask_holds_one_percent_of_the_units():
    assert top_fraction_mask(np.arange(1000.0)[None]).sum() == 10
