"""Fixtures of the claim tests: the suite's measured series, computed once per process from the cache."""
from __future__ import annotations

from typing import Callable

import pytest

from conftest import SUITE

from .evaluate import NOT_MEASURED, REPLICATED, claim_by_id, evaluate
from .measure import SeriesMeasurements
from .records import NonFiniteScoresError, worker_index
from .report import series_measurements


@pytest.fixture(scope="session")
def measured(pytestconfig) -> Callable[[str], SeriesMeasurements]:
    """family -> its measurements; records are computed where missing (one worker per checkpoint)."""
    suite = pytestconfig.stash[SUITE]
    cache: dict[str, SeriesMeasurements | NonFiniteScoresError] = {}

    def get(family: str) -> SeriesMeasurements:
        if family not in cache:
            try:
                cache[family] = series_measurements(suite, family, compute=True, rotate=worker_index())[0]
            except NonFiniteScoresError as err:
                cache[family] = err  # every claim of the family reports it; nothing is recomputed
        if isinstance(cache[family], NonFiniteScoresError):
            raise cache[family]
        return cache[family]

    return get


@pytest.fixture
def check_claim(measured, record_property) -> Callable[[str, str], None]:
    """Evaluate a claim for a family, record its numbers, and fail unless it replicates."""

    def check(claim_id: str, family: str) -> None:
        record_property("claim", claim_id)
        record_property("family", family)
        try:
            measurements = measured(family)
        except NonFiniteScoresError as err:
            record_property("verdict", NOT_MEASURED)
            record_property("measured", str(err))
            pytest.fail(f"{claim_id}[{family}] is not measured: {err}", pytrace=False)
        result = evaluate(claim_by_id(claim_id), measurements)
        record_property("verdict", result.verdict)
        record_property("measured", "; ".join(f"{c.label} {c.shown}" for c in result.checks))
        for c in result.checks:
            record_property(f"{c.label}.value", c.value)
            record_property(f"{c.label}.ci_low", c.interval[0])
            record_property(f"{c.label}.ci_high", c.interval[1])
        if result.verdict != REPLICATED:
            pytest.fail(result.message(), pytrace=False)

    return check
